"""`write_report`: the PNGs, the HTML page, event markers, and the page in a real browser."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo_transfer.errors import ReportArgumentError
from zoo_transfer.report import (
    EventMarker,
    _curves_figure,
    _misclassified_figure,
    event_markers,
    write_report,
)

HISTORY = {
    "loss": [1.2, 0.9, 0.7, 0.6, 0.5, 0.45],
    "val_loss": [1.1, 1.0, 0.8, 0.75, 0.7, 0.72],
    "accuracy": [0.4, 0.6, 0.7, 0.75, 0.8, 0.85],
    "val_accuracy": [0.45, 0.55, 0.65, 0.7, 0.74, 0.71],
    "image_size": [96, 96, 96, 128, 128, 128],
    "trainable_params": [1000, 1000, 5000, 5000, 9000, 9000],
}
EVENTS = [
    {"epoch": 4, "kind": "unfreeze", "detail": "stage3"},
    {"epoch": 2, "kind": "unfreeze", "detail": "stage4"},
    {"epoch": 3, "kind": "resize", "detail": "96 -> 128 px"},
]
CONFUSION = [[5, 1, 0], [2, 4, 1], [0, 1, 7]]
CLASSES = ["cat", "dog", "<bird>"]
EVIL = "</pre><script>alert('x')</script>"
CONFIG = {"model": "resnet50", "epochs": 6, "note": EVIL, "sizes": (96, 128)}

# Solid colours, so the grid PNG can be checked for them.
SOLID = [(220, 20, 20), (20, 200, 20), (20, 20, 220), (240, 200, 0)]


def _misclassified(n: int = 4) -> list:
    items = []
    for i in range(n):
        image = np.zeros((40, 48, 3), dtype=np.uint8 if i % 2 else np.float32)
        image[:] = SOLID[i % len(SOLID)]
        items.append((image, CLASSES[i % 3], CLASSES[(i + 1) % 3]))
    return items


@pytest.fixture
def report(tmp_path: Path) -> Path:
    return write_report(
        tmp_path / "report",
        history=HISTORY,
        events=EVENTS,
        confusion=CONFUSION,
        class_names=CLASSES,
        misclassified=_misclassified(),
        config=CONFIG,
        title="Run <1>",
    )


class _Page(HTMLParser):
    """Collects the images and the text of each element that has an id."""

    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.text_by_id: dict[str, str] = {}
        self.cells: dict[str, list[list[str]]] = {}
        self._ids: list[str | None] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs)
            return
        self._ids.append(attrs.get("id"))
        if tag == "tr":
            self._row = []
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "img":
            return
        if tag == "td" and self._row is not None:
            self._row.append("".join(self._cell or []))
            self._cell = None
        if tag == "tr" and self._row:
            owner = next((i for i in reversed(self._ids) if i), None)
            self.cells.setdefault(owner or "", []).append(self._row)
            self._row = None
        if self._ids:
            self._ids.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        for element_id in self._ids:
            if element_id:
                self.text_by_id[element_id] = self.text_by_id.get(element_id, "") + data


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


# ---------------------------------------------------------------------- files and HTML
def test_files_exist_and_pngs_decode(report):
    out = report.parent
    assert report.name == "report.html"
    manifest = json.loads((out / "report.json").read_text())
    expected = ["curves.png", "confusion.png", "misclassified.png", "report.html", "report.json"]
    assert manifest["files"] == expected
    assert manifest["epochs"] == 6
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    sizes = {}
    for name in ("curves.png", "confusion.png", "misclassified.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            pixels = np.asarray(image.convert("RGB"))
        sizes[name] = pixels.shape[1::-1]
        assert pixels.std() > 10, f"{name} looks blank"
    assert sizes["curves.png"] == (1100, 440)
    assert 300 <= sizes["confusion.png"][0] <= 1200 and 300 <= sizes["confusion.png"][1] <= 1200
    assert sizes["misclassified.png"][0] >= 4 * 150  # 4 images in one row


def test_misclassified_grid_shows_every_image_and_title(tmp_path):
    items = _misclassified(4)
    fig = _misclassified_figure([(np.asarray(i, dtype=np.uint8), t, p) for i, t, p in items], 4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert titles == [f"true: {t} / pred: {p}" for _, t, p in items]
    write_report(tmp_path, history=HISTORY, misclassified=items)
    pixels = np.asarray(Image.open(tmp_path / "misclassified.png").convert("RGB")).astype(int)
    for colour in SOLID:  # each solid image is drawn, float ones included
        close = np.abs(pixels - np.array(colour)).sum(axis=-1) < 12
        assert close.sum() > 500, f"colour {colour} missing from the grid"


def test_misclassified_grid_is_capped_and_counts_all(tmp_path):
    items = _misclassified(40)
    report = write_report(tmp_path, history=HISTORY, misclassified=items)
    fig = _misclassified_figure([(np.asarray(i, np.uint8), t, p) for i, t, p in items[:36]], 40)
    assert sum(1 for ax in fig.axes if ax.get_images()) == 36
    assert fig.get_suptitle() == "misclassified validation images (36 of 40)"
    assert "40 misclassified, 36 shown." in report.read_text()


def test_html_references_each_png_with_alt_text(report):
    page = _parse(report)
    assert [img["src"] for img in page.images] == [
        "curves.png",
        "confusion.png",
        "misclassified.png",
    ]
    for img in page.images:
        assert len(img["alt"]) > 10
        assert (report.parent / img["src"]).is_file()
    text = report.read_text()
    assert "<style>" in text and "http" not in text  # self-contained, nothing remote
    assert "<title>Run &lt;1&gt;</title>" in text
    assert "&lt;bird&gt;" in text  # class names in the alt text are escaped


def test_config_is_escaped_and_round_trips(report):
    text = report.read_text()
    assert "<script>" not in text and "alert('x')</script>" not in text
    assert "&lt;/pre&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "script" not in _parse(report).tags
    shown = json.loads(_parse(report).text_by_id["config"])
    assert shown == {"model": "resnet50", "epochs": 6, "note": EVIL, "sizes": [96, 128]}


def test_metrics_table_final_and_best(report):
    rows = {row[0]: row[1:] for row in _parse(report).cells["metrics"]}
    assert rows["loss"] == ["0.4500", "0.4500", "6"]
    assert rows["val_loss"] == ["0.7200", "0.7000", "5"]  # lower is better
    assert rows["accuracy"] == ["0.8500", "0.8500", "6"]
    assert rows["val_accuracy"] == ["0.7100", "0.7400", "5"]  # higher is better
    assert rows["image_size"] == ["128", "-", "-"]  # not a metric: no best
    assert rows["trainable_params"] == ["9,000", "-", "-"]


def test_events_listed_in_epoch_order(report):
    events = _parse(report).text_by_id["events"]
    lines = [line.strip() for line in events.splitlines() if line.strip()]
    assert lines == [
        "epoch 3: unfreeze: stage4",
        "epoch 4: resize: 96 -> 128 px",
        "epoch 5: unfreeze: stage3",
    ]


# ---------------------------------------------------------------------- event markers
def test_event_markers_positions_labels_and_rows():
    markers = event_markers(
        EVENTS + [{"epoch": 2, "kind": "resize"}, {"epoch": np.int64(0), "kind": " note "}]
    )
    assert markers == [
        EventMarker(x=0.5, epoch=0, kind="note", label="note", row=0),
        EventMarker(x=2.5, epoch=2, kind="unfreeze", label="unfreeze: stage4", row=0),
        EventMarker(x=2.5, epoch=2, kind="resize", label="resize", row=1),
        EventMarker(x=3.5, epoch=3, kind="resize", label="resize: 96 -> 128 px", row=0),
        EventMarker(x=4.5, epoch=4, kind="unfreeze", label="unfreeze: stage3", row=0),
    ]
    assert event_markers([]) == []


@pytest.mark.parametrize(
    "event, needle",
    [
        ({"epoch": -1, "kind": "unfreeze"}, "events[0]['epoch']=-1"),
        ({"epoch": "2", "kind": "unfreeze"}, "events[0]['epoch']='2'"),
        ({"epoch": True, "kind": "unfreeze"}, "events[0]['epoch']=True"),
        ({"epoch": 1.5, "kind": "unfreeze"}, "events[0]['epoch']=1.5"),
        ({"epoch": 1}, "events[0]['kind']=None"),
        ({"epoch": 1, "kind": ""}, "events[0]['kind']=''"),
        ((1, "stage4"), "events[0]=(1, 'stage4')"),
    ],
)
def test_event_markers_reject_bad_events(event, needle):
    with pytest.raises(ReportArgumentError, match="Expected") as info:
        event_markers([event])
    assert needle in str(info.value)


def _event_lines(ax) -> list[tuple[float, str, object]]:
    """Vertical lines of an axis: (x, colour, line style), sorted by x."""
    out = []
    for line in ax.get_lines():
        xs = np.asarray(line.get_xdata(), dtype=float)
        if len(xs) == 2 and xs[0] == xs[1] and line.get_label().startswith("_"):
            out.append((float(xs[0]), line.get_color(), line.get_linestyle()))
    return sorted(out)


def test_curves_figure_has_a_styled_vertical_line_per_event():
    markers = event_markers(EVENTS)
    fig = _curves_figure(HISTORY, markers, "t")
    loss_ax, acc_ax = fig.axes[:2]
    for ax in (loss_ax, acc_ax):
        lines = _event_lines(ax)
        assert [x for x, _, _ in lines] == [2.5, 3.5, 4.5]
        (_, c1, s1), (_, c2, s2), (_, c3, s3) = lines  # unfreeze, resize, unfreeze
        assert (c1, s1) == (c3, s3) and (c1, s1) != (c2, s2)
        labels = [t.get_text() for t in ax.texts]
        assert labels == [m.label for m in markers]
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "event: unfreeze" in legend and "event: resize" in legend
    curves = {line.get_label(): line for line in loss_ax.get_lines()}
    assert list(curves["loss"].get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(curves["val_loss"].get_ydata()) == HISTORY["val_loss"]
    assert acc_ax.get_ylabel() == "accuracy"


def test_short_history_without_val_keys_or_events(tmp_path):
    report = write_report(tmp_path / "r", history={"loss": [0.7]})
    out = report.parent
    manifest = json.loads((out / "report.json").read_text())
    assert manifest["files"] == ["curves.png", "misclassified.png", "report.html", "report.json"]
    assert not (out / "confusion.png").exists()
    text = report.read_text()
    assert "No events." in text and "No confusion matrix given." in text
    assert 'src="confusion.png"' not in text
    with Image.open(out / "misclassified.png") as image:  # the "none" image
        assert image.size == (400, 120)
        assert np.asarray(image.convert("L")).min() < 100  # has text on it

    fig = _curves_figure({"loss": [0.7]}, [], "t")
    loss_ax, acc_ax = fig.axes[:2]
    assert [list(line.get_ydata()) for line in loss_ax.get_lines()] == [[0.7]]
    assert [t.get_text() for t in acc_ax.texts] == ["no accuracy recorded"]
    assert loss_ax.get_xlim() == (0.5, 1.5)


def test_keras_history_object_and_event_after_last_epoch(tmp_path):
    class History:  # the shape of keras.callbacks.History
        history = {"loss": [1.0, 0.5], "val_accuracy": [0.5, 0.6]}

    report = write_report(tmp_path, history=History(), events=[{"epoch": 5, "kind": "resize"}])
    rows = {row[0]: row[1:] for row in _parse(report).cells["metrics"]}
    assert rows["val_accuracy"] == ["0.6000", "0.6000", "2"]
    fig = _curves_figure(History.history, event_markers([{"epoch": 5, "kind": "x"}]), "t")
    assert fig.axes[0].get_xlim()[1] >= 6.0  # the marker at 5.5 stays in view


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"history": [1, 2]}, "Received: [1, 2]"),
        ({"history": {"loss": "low"}}, "history['loss']"),
        ({"history": {"loss": [0.1, "x"]}}, "history['loss']"),
        ({"confusion": [[1, 2, 3]]}, "shape (1, 3)"),
        ({"confusion": [[1, -2], [0, 1]]}, "counts >= 0"),
        ({"confusion": [[1, 0], [0, 1]], "class_names": ["a"]}, "class_names=['a']"),
        ({"misclassified": [(np.zeros((4, 4, 2)), "a", "b")]}, "shape (4, 4, 2)"),
        ({"misclassified": [np.zeros((4, 4, 3))]}, "misclassified[0]"),
        ({"config": ["a"]}, "Received: ['a']"),
    ],
)
def test_bad_arguments_name_the_value(tmp_path, kwargs, needle):
    kwargs = {"history": HISTORY, **kwargs}
    with pytest.raises(ReportArgumentError, match="Expected") as info:
        write_report(tmp_path / "r", **kwargs)
    assert needle in str(info.value)
    assert not (tmp_path / "r").exists()  # checked before anything is written


def test_import_loads_neither_matplotlib_nor_tensorflow():
    probe = (
        "import sys, zoo_transfer.report\n"
        "print(sorted(m for m in ('matplotlib', 'tensorflow', 'keras') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ---------------------------------------------------------------------- headless browser
def _chromium() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


needs_chromium = pytest.mark.skipif(
    _chromium() is None,
    reason="no chromium: install Debian chromium: apt-get install chromium",
)

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
CHROMIUM_TIMEOUT_S = 60

# Appended to a copy of the page: after `load`, list every image's natural size in the DOM.
IMAGE_PROBE = """
<script>
window.addEventListener("load", function () {
  var out = document.createElement("pre");
  out.id = "zt-imgcheck";
  out.textContent = JSON.stringify(Array.from(document.images).map(function (img) {
    return {src: img.getAttribute("src"), complete: img.complete,
            width: img.naturalWidth, height: img.naturalHeight};
  }));
  document.body.appendChild(out);
});
</script>
"""


def _run_chromium(args: list[str], profile: Path) -> str:
    """Run chromium with the test flags; kill its whole process group on timeout."""
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT_S} s: {cmd}")
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {stderr[-2000:]}"
    return stdout


def _loaded_images(report: Path, work: Path) -> list[dict]:
    """Each `<img>` of the report as the browser sees it: src, complete, natural size."""
    site = work / "site"
    shutil.copytree(report.parent, site)
    probe = site / "probe.html"
    probe.write_text(
        report.read_text(encoding="utf-8").replace("</body>", IMAGE_PROBE + "</body>"),
        encoding="utf-8",
    )
    dom = _run_chromium(
        ["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()], work / "profile"
    )
    found = re.search(r'<pre id="zt-imgcheck">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not run; DOM was: {dom[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def _broken(images: list[dict]) -> list[str]:
    return [i["src"] for i in images if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]


@needs_chromium
def test_browser_loads_every_image_at_its_size(report, tmp_path):
    images = _loaded_images(report, tmp_path)
    assert [i["src"] for i in images] == ["curves.png", "confusion.png", "misclassified.png"]
    assert _broken(images) == []
    for i in images:
        with Image.open(report.parent / i["src"]) as png:
            assert (i["width"], i["height"]) == png.size


@needs_chromium
def test_browser_check_detects_a_broken_image(report, tmp_path):
    (report.parent / "confusion.png").unlink()
    images = _loaded_images(report, tmp_path)
    assert _broken(images) == ["confusion.png"]


@needs_chromium
def test_browser_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "screenshot.png"
    _run_chromium(
        [f"--screenshot={shot}", "--window-size=1200,1400", report.as_uri()], tmp_path / "profile"
    )
    with Image.open(shot) as image:
        assert image.size == (1200, 1400)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    assert pixels.std() > 20
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200
    # The curves PNG is on screen: its blue and orange lines show.
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(pixels - np.array(colour)).sum(axis=-1) < 30).sum() > 100
