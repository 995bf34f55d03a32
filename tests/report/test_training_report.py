import cv2
import numpy as np
import pytest

from coseg.report.plots import line_plot
from coseg.report.training import best_epoch, read_log, training_section
from tests.report.report_runs import LOG, PageParser, run_files


def test_curves_written_from_log(tmp_path):
    run = run_files(tmp_path / "run")
    files = tmp_path / "files"
    html = training_section(run, files, "s1")
    for name in ("s1_loss.png", "s1_val.png"):
        picture = cv2.imread(str(files / name))
        assert picture is not None and picture.shape[0] > 200 and picture.shape[1] > 300
        assert picture.std() > 10  # lines and text, not a blank canvas
        assert f'src="files/{name}"' in html
    assert "&lt;my data&gt; &amp; more" in html  # the config, escaped
    parser = PageParser()
    parser.feed(html)
    epochs = parser.tables["table0"]
    assert epochs[0][:3] == ["epoch", "lr", "train_ce"] and [r[0] for r in epochs[1:]] == ["1", "2", "3"]


def test_best_epoch_follows_the_selection_metric(tmp_path):
    run = run_files(tmp_path / "run")
    columns, rows = read_log(run / "log.csv")
    assert best_epoch(columns, rows) == (2, "val_J")
    (run / "log.csv").write_text("epoch,train_loss,val_R@1,val_MAP@R\n1,2.0,10,5\n2,1.5,30,4\n3,1.2,20,,\n")
    columns, rows = read_log(run / "log.csv")
    assert best_epoch(columns, rows) == (1, "val_MAP@R")  # retrieval selects by MAP@R; a blank is no value
    (run / "log.csv").write_text("epoch,train_loss\n1,2.0\n2,1.0\n")
    columns, rows = read_log(run / "log.csv")
    assert best_epoch(columns, rows) is None


def test_run_without_validation_has_only_the_loss_plot(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text("epoch,lr,train_loss\n1,0.1,2.0\n2,0.05,1.0\n")
    html = training_section(run, tmp_path / "files", "s3")
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == ["s3_loss.png"]
    assert "Config" not in html
    (run / "log.csv").write_text("epoch,lr,train_loss\n")
    assert "no finished epoch" in training_section(run, tmp_path / "files", "s4")


def test_line_plot_checks_its_series(tmp_path):
    with pytest.raises(ValueError, match="has 2 values for 3"):
        line_plot(tmp_path / "p.png", [1, 2, 3], {"a": [1.0, 2.0]}, "t", "x", "y")
    with pytest.raises(ValueError, match="nothing to plot"):
        line_plot(tmp_path / "p.png", [1, 2, 3], {}, "t", "x", "y")
    line_plot(tmp_path / "p.png", [1, 2, 4, 8], {"R@K": [10.0, np.nan, 30.0, 40.0]}, "t", "K", "%", log_x=True)
    assert cv2.imread(str(tmp_path / "p.png")) is not None and not list(tmp_path.glob(".p.png.tmp-*"))


def test_plot_axis_spans_every_epoch_and_names_series_without_values(tmp_path, monkeypatch):
    from coseg.report import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: drawn.append(figure.axes[0]))
    line_plot(tmp_path / "p.png", [1, 2, 3], {"loss": [np.nan, 1.0, np.inf], "J": [np.nan] * 3}, "t", "epoch", "y")
    line_plot(tmp_path / "q.png", [1], {"J": [40.0]}, "t", "epoch", "y")  # a run of one epoch

    def ticks(axes):
        low, high = axes.get_xlim()
        return [t for t in axes.get_xticks() if low <= t <= high]

    several, one = drawn
    assert ticks(several) == [1, 2, 3] and ticks(one) == [1]  # not 1.9-2.1 (the one finite loss), not 0.95, 1.0...
    assert [t.get_text() for t in several.get_legend().get_texts()] == ["loss", "J (no finite value)"]


def test_nan_and_infinite_log_values_sort_as_numbers(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text("epoch,train_loss,val_J\n1,nan,40\n2,inf,\n3,-inf,NaN\n")
    html = training_section(run, tmp_path / "files", "s1")
    cells = [c.split(">")[0] for c in html.split("<td")[1:]]
    values = [c.split('data-value="')[1].split('"')[0] for c in cells]  # what the sort script reads
    assert values == ["1", "", "40", "2", "Infinity", "", "3", "-Infinity", ""]


def test_truncated_last_line_of_the_log_is_dropped(tmp_path):
    run = run_files(tmp_path / "run")
    with open(run / "log.csv", "a") as f:
        f.write("4,0.0003,0.2")  # a copy taken while the row was written
    columns, rows = read_log(run / "log.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and columns[-1] == "val_J"
    parser = PageParser()
    parser.feed(training_section(run, tmp_path / "files", "s1"))
    assert [r[0] for r in parser.tables["table0"][1:]] == ["1", "2", "3"]
    (run / "log.csv").write_bytes(b"epoch,train_loss\n1,caf\xe9\n")
    with pytest.raises(ValueError, match="log.csv: cannot read it"):
        read_log(run / "log.csv")


def test_the_config_keeps_its_lines(tmp_path):
    """config.yaml is shown line by line as saved, not as one line with ``\\x0a`` for each line break."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data: <my data> & more\r\nimage_size: 64\nval_groups:\n- a\x1bb\n")
    html = training_section(run, tmp_path / "files", "s1")
    shown = html.split('<pre class="config">', 1)[1].split("</pre>", 1)[0]
    assert shown.split("\n") == ["data: &lt;my data&gt; &amp; more", "image_size: 64", "val_groups:", r"- a\x1bb"]


def test_log_saved_with_a_byte_order_mark_keeps_its_epochs(tmp_path):
    """A log.csv saved again by a spreadsheet ("CSV UTF-8" starts with a BOM): its epochs are shown, not "holds no
    finished epoch yet"."""
    run = run_files(tmp_path / "run")
    (run / "log.csv").write_text(LOG, encoding="utf-8-sig")
    parser = PageParser()
    parser.feed(training_section(run, tmp_path / "files", "s1"))
    assert [r[0] for r in parser.tables["table0"]] == ["epoch", "1", "2", "3"]
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == ["s1_loss.png", "s1_val.png"]


def test_epoch_table_shows_large_and_small_numbers_readably(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text("epoch,lr,train_loss,seconds\n1,0.00001,0.000123,12345.6\n2,0.0005,0.8532,9999.6\n")
    parser = PageParser()
    parser.feed(training_section(run, tmp_path / "files", "s1"))
    # was: seconds shown as 1.235e+04 and 1e+04
    assert parser.tables["table0"][1:] == [["1", "1e-05", "0.000123", "12346"], ["2", "0.0005", "0.8532", "10000"]]


def test_an_unfinished_run_is_said_to_be_so(tmp_path):
    from coseg.models import create_model

    run = run_files(tmp_path / "run")
    html = training_section(run, tmp_path / "files", "s1")
    assert "<b>Unfinished:</b> no model file (last.safetensors) yet" in html  # killed in its first epoch
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1)
    for finished, note in (("no", "its last model is of epoch 3, and the run was stopped"), ("epochs", None),
                           ("time", None), (None, None)):  # None: a run of an older version, which did not say
        model.save(run / "last.safetensors", metadata={"epoch": "3", **({"finished": finished} if finished else {})})
        html = training_section(run, tmp_path / "files", "s1")
        assert ("Unfinished" in html) == (note is not None) and (note is None or note in html), finished
    (run / "last.safetensors").write_bytes(b"\x05")
    html = training_section(run, tmp_path / "files", "s1")
    assert ("<b>Last model:</b> " in html and "last.safetensors is not a safetensors model file" in html
            and "Unfinished" not in html)
    (run / "last.safetensors").unlink()
    (run / "config.yaml").unlink()
    assert "Unfinished" not in training_section(run, tmp_path / "files", "s1")  # a log alone: nothing to tell
