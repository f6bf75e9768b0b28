import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("concept_presence.py")
launch_gradio_widget(module)
