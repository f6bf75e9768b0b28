import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("image_fidelity.py")
launch_gradio_widget(module)
