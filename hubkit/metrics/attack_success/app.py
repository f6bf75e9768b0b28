import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("attack_success.py")
launch_gradio_widget(module)
