import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("prompt_alignment.py")
launch_gradio_widget(module)
