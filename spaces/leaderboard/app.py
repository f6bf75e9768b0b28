"""hubkit leaderboard Space: efficient diffusion methods ranked from a results dataset, plus a request queue.

Self-contained (gradio, huggingface_hub, pandas, matplotlib): it runs on a Hugging Face Space or locally
against any Hub that ``HF_ENDPOINT`` names, hubkit's embedded one included. Settings are read from the
environment at call time: ``HUBKIT_RESULTS_REPO``, ``HUBKIT_REQUESTS_REPO``, ``HF_ENDPOINT`` and ``HF_TOKEN``.

The table shows one suite at a time, with that suite's metrics; the plots are those the suite declares, as
the leaderboard runner lists them in ``plots.json`` beside ``leaderboard.parquet``, drawn by
``leaderboard_plots.py`` (a copy of hubkit's ``hubkit/leaderboard/plots.py``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id
from leaderboard_plots import PLOTS_FILE, draw, read_plots_json

RESULTS_FILE = "leaderboard.parquet"
DEFAULT_RESULTS_REPO = "hubkit/leaderboard-results"
DEFAULT_REQUESTS_REPO = "hubkit/leaderboard-requests"
ID_COLUMNS = (
    "model",
    "revision",
    "method",
    "kind",
    "base_model",
    "architecture",
    "suite",
    "suite_version",
    "params",
    "date",
    "hubkit_version",
)
"""The fixed columns of ``leaderboard.parquet``; every other column is a metric."""
SHOWN_ID_COLUMNS = ["model", "revision", "method", "architecture", "suite", "suite_version", "params"]
QUEUE_COLUMNS = ["model", "revision", "status", "reason", "submitted_time", "updated_time"]
ALL_SUITES = "All"
"""The suite choice that shows every suite's rows (and columns) at once; the table starts on one suite."""
ALL_ARCHITECTURES = "All"
"""The architecture choice that shows rows of every base family (``sd1``, ``sd2``, ``sdxl``) and unknown."""
MAX_PLOTS = 4
"""Plot slots under the table: a suite declaring more shows its first ones."""
ACTIVE_STATUSES = ("PENDING", "RUNNING")
CACHE_SECONDS = 60.0
"""A page load re-reads the results when the copy in memory is older than this; Refresh always does."""

ABOUT = """
## What the suites measure

Every artifact is evaluated by the hubkit leaderboard runner on fixed prompts and seeds, side by side with
its base model in the same run, and scored by a judge network (a small CNN that reads shape, colour and
background from an image). One row per (model, revision of its weights, suite): the commits that write
results into a model's card do not count as new revisions. A suite's version changes when its prompts,
seeds or metrics do, and rows of different versions are not comparable. `architecture` is the family of the
artifact's base (`sd1`, `sd2`, `sdxl`): pick one to compare artifacts made for the same kind of model.

| metric | meaning | better |
|---|---|---|
| `alignment` | share of (image, attribute) pairs where the judge reads what the prompt asked for | higher |
| `alignment_shape`, `alignment_colour` | the same, for one attribute | higher |
| `fd` | Fréchet distance between judge features of generated and reference images (FID-style) | lower |
| `unet_evals` | UNet evaluations per image (steps × guidance passes) | lower |
| `time_ratio` | median sampling time relative to the base pipeline in the same run | lower |
| `target_presence` | share of images of an erased concept in which the judge still sees it | lower |
| `paraphrase_presence` | the same, for paraphrases of the concept ("crimson" for "red") | lower |
| `neighbour_alignment` | alignment on prompts with concepts close to the erased one | higher |
| `unrelated_alignment` | alignment on prompts with unrelated concepts | higher |
| `metric@N` | the metric when sampling with N steps | |

**Plots.** Each suite declares its trade-off plots (two metrics, a colour, the better corner); the
*Leaderboard* tab draws those of the chosen suite over the rows shown, one labelled point per row (one
curve per row for a sweep, numbered by the swept setting).

Submit a model on the *Submit* tab: the runner evaluates queued requests and appends their rows to the
results dataset. Results live in the dataset `{results}`, requests in `{requests}`.
"""


# ------------------------------------------------------------------------------------------ settings


def results_repo() -> str:
    """The dataset repo holding ``leaderboard.parquet``."""
    return os.environ.get("HUBKIT_RESULTS_REPO") or DEFAULT_RESULTS_REPO


def requests_repo() -> str:
    """The dataset repo the submit form writes requests to."""
    return os.environ.get("HUBKIT_REQUESTS_REPO") or DEFAULT_REQUESTS_REPO


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


def _api() -> HfApi:
    return HfApi(endpoint=_endpoint(), token=_token())


def _where() -> str:
    return _endpoint() or "the Hub"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(err: Exception) -> str:
    """One line about a Hub error: the server's own message when it sent one."""
    response = getattr(err, "response", None)
    if response is not None:
        said = response.headers.get("X-Error-Message")
        if said:
            return f"HTTP {response.status_code}: {said}"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


# ------------------------------------------------------------------------------------------- results


def empty_results() -> pd.DataFrame:
    """A results table with the fixed columns and no rows."""
    return pd.DataFrame({name: pd.Series(dtype="object") for name in ID_COLUMNS})


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Every column that is not one of the fixed id columns, in the file's order."""
    return [name for name in frame.columns if name not in ID_COLUMNS]


def normalize_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing id columns added empty, metric columns numeric (anything else becomes null)."""
    frame = frame.copy()
    for name in ID_COLUMNS:
        if name not in frame.columns:
            frame[name] = None
    for name in metric_columns(frame):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return frame[list(ID_COLUMNS) + metric_columns(frame)]


@dataclass
class Results:
    """The results table as last read, one sentence about where it came from, and the plots its suites
    declare (``{suite: [plot, ...]}``, from ``plots.json``; empty when there is none)."""

    frame: pd.DataFrame
    message: str
    read_at: float = field(default_factory=time.monotonic)
    plots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    plots_note: str | None = None


def read_plots() -> tuple[dict[str, list[dict[str, Any]]], str | None]:
    """The plot declarations in ``plots.json`` of the results dataset, and why there are none if so."""
    repo = results_repo()
    try:
        path = hf_hub_download(repo, PLOTS_FILE, repo_type="dataset", endpoint=_endpoint(), token=_token())
        return read_plots_json(Path(path).read_bytes()), None
    except EntryNotFoundError:
        return {}, f"`{repo}` has no `{PLOTS_FILE}`: no plots."
    except Exception as err:  # a broken file must show as a message, never crash the Space
        return {}, f"No plots: `{PLOTS_FILE}` in `{repo}` could not be read ({type(err).__name__}: {err})."


def read_results() -> Results:
    """Read ``leaderboard.parquet`` from the results dataset; an empty table and the reason when it cannot."""
    repo = results_repo()
    try:
        path = hf_hub_download(repo, RESULTS_FILE, repo_type="dataset", endpoint=_endpoint(), token=_token())
        frame = normalize_results(pd.read_parquet(path))
    except RepositoryNotFoundError:
        message = f"No results yet: the dataset `{repo}` does not exist on {_where()} (or it is private)."
    except LocalEntryNotFoundError:
        message = f"No results: {_where()} could not be reached to read `{repo}`."
    except EntryNotFoundError:
        message = f"No results yet: the dataset `{repo}` has no `{RESULTS_FILE}`."
    except HfHubHTTPError as err:
        message = f"No results: reading `{repo}` failed ({_describe(err)})."
    except Exception as err:  # a broken file must show as a message, never crash the Space
        message = f"No results: `{RESULTS_FILE}` in `{repo}` could not be read ({type(err).__name__}: {err})."
    else:
        suites = frame["suite"].dropna().nunique()
        models = frame["model"].dropna().nunique()
        message = f"{len(frame)} results for {models} models on {suites} suites, from `{repo}`."
        if frame.empty:
            message = f"No results yet: `{RESULTS_FILE}` in `{repo}` has no rows."
        plots, problem = read_plots()
        return Results(frame, message, plots=plots, plots_note=problem)
    return Results(empty_results(), message)


class ResultsStore:
    """The results in memory: read at startup, on Refresh, and on a page load once the copy is stale."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: Results | None = None

    def reload(self) -> Results:
        """Re-read the results from the Hub."""
        results = read_results()
        with self._lock:
            self._results = results
        return results

    def get(self, max_age: float | None = None) -> Results:
        """The results in memory, read first if there are none or they are older than ``max_age`` seconds."""
        with self._lock:
            results = self._results
        if results is None or (max_age is not None and time.monotonic() - results.read_at > max_age):
            return self.reload()
        return results


STORE = ResultsStore()


# ------------------------------------------------------------------------------------------- filters


def suites_of(frame: pd.DataFrame) -> list[str]:
    """The suites present, the one with the most models first (ties by name): the table starts on it."""
    counts = frame.dropna(subset=["suite"]).groupby("suite")["model"].nunique()
    return [str(suite) for suite, _ in sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))]


def methods_of(frame: pd.DataFrame) -> list[str]:
    """The methods present, sorted."""
    return sorted(str(m) for m in frame["method"].dropna().unique())


def architectures_of(frame: pd.DataFrame) -> list[str]:
    """The base families present (``sd1``, ``sd2``, ``sdxl``), sorted."""
    return sorted(str(a) for a in frame["architecture"].dropna().unique())


def filter_rows(
    frame: pd.DataFrame,
    suite: str | None,
    methods: list[str] | None,
    search: str | None,
    architecture: str | None = None,
) -> pd.DataFrame:
    """Rows of ``suite`` (``All`` or empty: every suite), ``methods`` (none: every method) and artifacts on
    a base of ``architecture`` (``All`` or empty: any) whose model contains ``search`` (case-insensitive)."""
    rows = frame
    if suite and suite != ALL_SUITES:
        rows = rows[rows["suite"] == suite]
    if architecture and architecture != ALL_ARCHITECTURES:
        rows = rows[rows["architecture"] == architecture]
    if methods:
        rows = rows[rows["method"].isin(list(methods))]
    if search and search.strip():
        rows = rows[rows["model"].fillna("").str.contains(search.strip(), case=False, regex=False)]
    return rows


def table_view(rows: pd.DataFrame) -> pd.DataFrame:
    """The displayed table: id columns, the metric columns these rows have values for, 4 decimals."""
    metrics = [name for name in metric_columns(rows) if rows[name].notna().any()]
    view = rows[SHOWN_ID_COLUMNS + metrics].copy()
    view["revision"] = view["revision"].fillna("").astype(str).str[:7]
    view["suite_version"] = view["suite_version"].astype("Int64") if len(view) else view["suite_version"]
    view[metrics] = view[metrics].round(4)
    order = ["suite", "alignment", "model"] if "alignment" in metrics else ["suite", "model"]
    ascending = [True, False, True] if "alignment" in metrics else [True, True]
    view = view.sort_values(order, ascending=ascending, na_position="last", kind="stable")
    return view.reset_index(drop=True)


def leaderboard(
    suite: str | None, methods: list[str] | None, search: str | None, architecture: str | None = None
) -> pd.DataFrame:
    """The leaderboard table, filtered by suite, methods, a model-name search and the base's family."""
    return table_view(filter_rows(STORE.get().frame, suite, methods, search, architecture))


def plots(
    suite: str | None, methods: list[str] | None, search: str | None, architecture: str | None = None
) -> list[Any]:
    """The plots ``suite`` declares, drawn over the filtered rows (``MAX_PLOTS`` slots, unused ones hidden),
    and a note on those with nothing to show."""
    results = STORE.get()
    figures, notes = [], []
    if not suite or suite == ALL_SUITES:
        notes.append("Pick a suite to see its plots.")
    elif suite in results.plots:
        rows = filter_rows(results.frame, suite, methods, search, architecture)
        for plot in results.plots[suite]:
            figure = draw({"suite": suite, **plot}, rows)
            if figure is None:
                notes.append(
                    f"{plot.get('title') or plot['name']}: no rows in this selection have both "
                    f"`{plot['x']}` and `{plot['y']}`: nothing to plot."
                )
            else:
                figures.append(figure)
    else:
        notes.append(results.plots_note or f"The suite `{suite}` declares no plots.")
    if len(figures) > MAX_PLOTS:
        notes.append(f"{len(figures) - MAX_PLOTS} more plots of `{suite}` are in `{results_repo()}`.")
    shown = [gr.Plot(value=figure, visible=True) for figure in figures[:MAX_PLOTS]]
    hidden = [gr.Plot(value=None, visible=False) for _ in range(MAX_PLOTS - len(shown))]
    return [*shown, *hidden, "\n\n".join(notes)]


def _filter_updates(
    results: Results, suite: str | None = None, architecture: str | None = None
) -> tuple[str, Any, Any, Any]:
    """The status line, the suite choices (``suite`` kept if present, else the first suite), methods and
    architecture choices (``architecture`` kept if present, else all)."""
    suites = suites_of(results.frame)
    methods = methods_of(results.frame)
    choices = [*suites, ALL_SUITES]
    keep = suite if suite in choices else choices[0]
    families = [ALL_ARCHITECTURES, *architectures_of(results.frame)]
    return (
        results.message,
        gr.Dropdown(choices=choices, value=keep),
        gr.CheckboxGroup(choices=methods, value=methods),
        gr.Dropdown(choices=families, value=architecture if architecture in families else ALL_ARCHITECTURES),
    )


def about() -> str:
    """The About tab's text, naming the datasets in use."""
    return ABOUT.format(results=results_repo(), requests=requests_repo())


def leaderboard_records(
    suite: str = ALL_SUITES,
    methods: list[str] | None = None,
    search: str = "",
    architecture: str = ALL_ARCHITECTURES,
) -> dict:
    """The filtered leaderboard as ``{"headers": [...], "data": [[...], ...]}`` (nulls as None); every suite
    unless one is named, every method unless some are, every base family unless one (sd1, sd2, sdxl) is."""
    view = leaderboard(suite, methods, search, architecture)
    split = json.loads(view.to_json(orient="split", index=False))
    return {"headers": split["columns"], "data": split["data"]}


def status_message() -> str:
    """One sentence about the results in memory (re-read when stale), or why there are none."""
    return STORE.get(max_age=CACHE_SECONDS).message


def refresh_message() -> str:
    """Re-read the results from the Hub; one sentence about them, or why there are none."""
    return STORE.reload().message


def refresh(suite: str | None = None, architecture: str | None = None) -> tuple[str, Any, Any, Any]:
    """Re-read the results; the status line and the suite / method / architecture choices in them."""
    return _filter_updates(STORE.reload(), suite, architecture)


def status(suite: str | None = None, architecture: str | None = None) -> tuple[str, Any, Any, Any]:
    """The status line and filter choices of the results in memory (re-read when stale)."""
    return _filter_updates(STORE.get(max_age=CACHE_SECONDS), suite, architecture)


# --------------------------------------------------------------------------------------------- queue


def request_path(model: str) -> str:
    """Where the request for ``model`` (namespace/name) lives in the requests dataset."""
    return f"requests/{model}.json"


def queue() -> pd.DataFrame:
    """Every request in the requests dataset with its status and reason, newest first."""
    empty = pd.DataFrame({name: pd.Series(dtype="object") for name in QUEUE_COLUMNS})
    try:
        folder = snapshot_download(
            requests_repo(),
            repo_type="dataset",
            allow_patterns=["requests/*"],
            endpoint=_endpoint(),
            token=_token(),
        )
    except Exception:  # no requests repo yet, or no Hub: an empty queue
        return empty
    rows = []
    for path in sorted(Path(folder, "requests").rglob("*.json")):
        try:
            request = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(request, dict):
            rows.append({name: request.get(name) for name in QUEUE_COLUMNS})
    if not rows:
        return empty
    frame = pd.DataFrame(rows, columns=QUEUE_COLUMNS)
    return frame.sort_values("submitted_time", ascending=False, na_position="last").reset_index(drop=True)


_SUBMIT_LOCK = threading.Lock()


def _check_model(api: HfApi, model: str, revision: str | None) -> str | None:
    """Why ``model`` cannot be evaluated (no such repo or revision), or None."""
    at = f" at revision `{revision}`" if revision else ""
    try:
        api.model_info(model, revision=revision)
    except RevisionNotFoundError:
        return f"The model `{model}` has no revision `{revision}` on {_where()}: nothing was submitted."
    except RepositoryNotFoundError:
        return (
            f"There is no model repo `{model}` on {_where()} (or it is private and the Space's token cannot "
            "see it): nothing was submitted."
        )
    except HfHubHTTPError as err:
        return f"Could not check `{model}`{at} on {_where()} ({_describe(err)}): nothing was submitted."
    return None


def submit(model: str | None, revision: str | None = None) -> str:
    """File an evaluation request for ``model`` (at ``revision``) as ``requests/<ns>/<name>.json``."""
    model = (model or "").strip()
    revision = (revision or "").strip() or None
    if not model:
        return "Enter a model repo id, `namespace/name`."
    try:
        if model.count("/") != 1:
            raise HFValidationError("it must have the form namespace/name")
        validate_repo_id(model)
    except HFValidationError as err:
        return f"`{model}` is not a valid model repo id: {err}"
    if _token() is None:
        return "Submitting needs a token: set `HF_TOKEN` (a Space secret) to one that may write the queue."
    api = _api()
    problem = _check_model(api, model, revision)
    if problem:
        return problem
    repo, path = requests_repo(), request_path(model)
    with _SUBMIT_LOCK:
        try:
            api.create_repo(repo, repo_type="dataset", exist_ok=True)
            head = api.dataset_info(repo).sha
            try:
                local = hf_hub_download(
                    repo, path, repo_type="dataset", revision=head, endpoint=_endpoint(), token=_token()
                )
                existing = json.loads(Path(local).read_text(encoding="utf-8"))
            except EntryNotFoundError:
                existing = None
            if isinstance(existing, dict) and existing.get("status") in ACTIVE_STATUSES:
                return (
                    f"`{model}` is already queued (status {existing['status']}, submitted "
                    f"{existing.get('submitted_time')}): nothing new was submitted."
                )
            now = _now()
            request = {
                "schema_version": 1,
                "model": model,
                "revision": revision,
                "status": "PENDING",
                "submitted_time": now,
                "updated_time": now,
                "reason": None,
                "submitted_by": "space",
            }
            api.upload_file(
                path_or_fileobj=(json.dumps(request, indent=2) + "\n").encode("utf-8"),
                path_in_repo=path,
                repo_id=repo,
                repo_type="dataset",
                commit_message=f"Request evaluation of {model}" + (f" @ {revision}" if revision else ""),
                parent_commit=head,
            )
        except HfHubHTTPError as err:
            status_code = err.response.status_code if err.response is not None else None
            if status_code == 412:
                return "The queue changed while submitting: please submit again."
            if status_code in (401, 403):
                return f"The Space's token may not write the queue `{repo}` ({_describe(err)})."
            return f"Could not file the request in `{repo}` ({_describe(err)})."
    at = f" at revision `{revision}`" if revision else ""
    return f"Queued `{model}`{at} for evaluation (status PENDING): `{path}` in `{repo}`."


# ------------------------------------------------------------------------------------------------ UI


def build_demo() -> gr.Blocks:
    """The Space's Blocks; nothing is read from the Hub until a page loads or an endpoint is called."""
    with gr.Blocks(title="hubkit Leaderboard") as demo:
        gr.Markdown(
            "# hubkit Leaderboard\nEfficient diffusion methods — pipelines, adapters and quantized "
            "UNets — measured side by side on hubkit's suites."
        )
        with gr.Tabs():
            with gr.Tab("Leaderboard", id="leaderboard"):
                status_md = gr.Markdown(elem_id="leaderboard-status")
                with gr.Row():
                    suite = gr.Dropdown(choices=[], value=None, label="Suite", elem_id="filter-suite")
                    architecture = gr.Dropdown(
                        choices=[ALL_ARCHITECTURES],
                        value=ALL_ARCHITECTURES,
                        label="Base architecture",
                        elem_id="filter-architecture",
                    )
                    methods = gr.CheckboxGroup(
                        choices=[], value=[], label="Methods (none ticked: all)", elem_id="filter-methods"
                    )
                    search = gr.Textbox(
                        label="Search models", placeholder="e.g. alice/", elem_id="filter-search"
                    )
                    refresh_button = gr.Button("Refresh", elem_id="refresh-button", scale=0)
                table = gr.Dataframe(
                    value=table_view(empty_results()),
                    datatype="auto",
                    interactive=False,
                    elem_id="leaderboard-table",
                    label="Results (click a header to sort)",
                    buttons=["copy", "fullscreen"],
                )
                slots = []
                for first in range(0, MAX_PLOTS, 2):
                    with gr.Row():
                        slots += [
                            gr.Plot(visible=False, format="png", show_label=False, elem_id=f"plot-{n}")
                            for n in range(first, min(first + 2, MAX_PLOTS))
                        ]
                plots_md = gr.Markdown(elem_id="plots-status")
            with gr.Tab("Submit", id="submit"):
                gr.Markdown(
                    "Queue a model repo for evaluation. It must exist on the Hub (at the revision, if you "
                    "give one) and not be queued already."
                )
                with gr.Row():
                    model_box = gr.Textbox(
                        label="Model repo id", placeholder="namespace/name", elem_id="submit-model"
                    )
                    revision_box = gr.Textbox(
                        label="Revision (optional)",
                        placeholder="branch, tag or commit sha; default main",
                        elem_id="submit-revision",
                    )
                submit_button = gr.Button("Submit", variant="primary", elem_id="submit-button")
                submit_md = gr.Markdown(elem_id="submit-status")
                queue_table = gr.Dataframe(
                    value=pd.DataFrame(columns=QUEUE_COLUMNS),
                    interactive=False,
                    elem_id="queue-table",
                    label="Evaluation queue",
                )
                queue_button = gr.Button("Refresh queue", elem_id="queue-button", size="sm")
            with gr.Tab("About", id="about"):
                about_md = gr.Markdown(elem_id="about")

        filters_in = [suite, methods, search, architecture]
        plot_out = [*slots, plots_md]
        choices_out = [status_md, suite, methods, architecture]

        # The public API: typed endpoints that take any suite / method names (the UI's dropdown and
        # checkboxes only accept the choices their session was given, so UI events stay private).
        gr.api(leaderboard_records, api_name="leaderboard")
        gr.api(status_message, api_name="status")
        gr.api(refresh_message, api_name="refresh")
        queue_button.click(queue, outputs=queue_table, api_name="queue")
        submit_button.click(
            submit, inputs=[model_box, revision_box], outputs=submit_md, api_name="submit"
        ).then(queue, outputs=queue_table, api_name="queue_after_submit", api_visibility="private")

        gr.on(
            triggers=[suite.input, methods.input, search.change, architecture.input],
            fn=leaderboard,
            inputs=filters_in,
            outputs=table,
            api_name="filter_table",
            api_visibility="private",
            trigger_mode="always_last",
        ).then(plots, inputs=filters_in, outputs=plot_out, api_name="filter_plots", api_visibility="private")
        refresh_button.click(
            refresh,
            inputs=[suite, architecture],
            outputs=choices_out,
            api_name="refresh_ui",
            api_visibility="private",
        ).then(
            leaderboard, inputs=filters_in, outputs=table, api_name="refresh_table", api_visibility="private"
        ).then(plots, inputs=filters_in, outputs=plot_out, api_name="refresh_plots", api_visibility="private")
        demo.load(
            status,
            inputs=[suite, architecture],
            outputs=choices_out,
            api_name="load_ui",
            api_visibility="private",
        ).then(
            leaderboard, inputs=filters_in, outputs=table, api_name="load_table", api_visibility="private"
        ).then(
            plots, inputs=filters_in, outputs=plot_out, api_name="load_plots", api_visibility="private"
        ).then(queue, outputs=queue_table, api_name="load_queue", api_visibility="private").then(
            about, outputs=about_md, api_name="about", api_visibility="private"
        )
    return demo


demo = build_demo()

if __name__ == "__main__":
    STORE.reload()
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
    )
