import math
import os
from pathlib import Path

from coseg.report.html import Page, esc, image, link, table, tiles
from tests.report.report_runs import AWKWARD_GROUPS, PageParser


def test_escaping_of_awkward_names():
    assert esc('<b>x</b> & "y" \'z\'') == "&lt;b&gt;x&lt;/b&gt; &amp; &quot;y&quot; &#x27;z&#x27;"
    assert esc("two  spaces") == "two  spaces"
    for name in AWKWARD_GROUPS:
        escaped = esc(name)
        assert not set("<>\"'") & set(escaped)
        parser = PageParser()
        parser.feed(f"<table><tr><td>{escaped}</td></tr></table>")
        assert parser.tables["table0"] == [[name]]  # the browser shows the name itself


def test_undecodable_file_name_is_shown_with_escapes():
    name = Path(os.fsdecode(b"caf\xe9 <1>.jpg"))
    assert esc(name) == "caf\\xe9 &lt;1&gt;.jpg"
    assert esc(os.fsdecode(b"caf\xe9.jpg")) == "caf\\xe9.jpg"  # the same name as a str
    assert esc("café ✓") == "café ✓"  # decodable text unchanged


def test_links_to_the_files_folder_are_url_quoted():
    assert link(Path("out/report_files"), "s1_00001.png") == "report_files/s1_00001.png"
    assert link(Path('a #1 50% & "b"_files'), "s2_loss.png") == "a%20%231%2050%25%20%26%20%22b%22_files/s2_loss.png"
    assert link(Path(os.fsdecode(b"caf\xe9_files")), "x.png") == "caf%E9_files/x.png"  # the name's own bytes


def test_table_cells_numbers_and_sorting_values():
    html = table(["name", "J"], [["a<b", 12.3456], ["c", math.nan], ["d", 7]], number_format=".1f",
                 table_id="t")
    assert 'class="data sortable"' in html and 'id="t"' in html
    assert "<td>a&lt;b</td>" in html
    assert '<td class="num" data-value="12.3456">12.3</td>' in html
    assert '<td class="num" data-value="">–</td>' in html  # NaN: blank sort value, sorted last by the script
    assert '<td class="num" data-value="7">7</td>' in html
    assert 'class="data"' in table(["a"], [[1]], sortable=False)


def test_image_cells_and_grid_escape_alt_and_class():
    cell = image("files/x_1.png", 'a "quoted" <name>', "caption", "right")
    assert 'alt="a &quot;quoted&quot; &lt;name&gt;"' in cell and '<figure class="right">' in cell
    assert tiles([[cell, cell], [cell]], 120) == ('<div class="tiles" style="--cell:120px">'
                                                  f'<div class="tile">{cell}{cell}</div>'
                                                  f'<div class="tile">{cell}</div></div>')


def test_page_is_self_contained():
    page = Page('Report <"x">', "intro")
    page.add("A & B", "<p>body</p>")
    text = page.render()
    parsed = PageParser()
    parsed.feed(text)
    assert parsed.scripts == 1 and not parsed.external  # one inline script, nothing from the network
    assert "<title>Report &lt;&quot;x&quot;&gt;</title>" in text and '<a href="#s1">A &amp; B</a>' in text
