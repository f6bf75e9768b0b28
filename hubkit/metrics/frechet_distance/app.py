import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("frechet_distance.py")
launch_gradio_widget(module)
