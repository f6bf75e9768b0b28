import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("sampling_cost.py")
launch_gradio_widget(module)
