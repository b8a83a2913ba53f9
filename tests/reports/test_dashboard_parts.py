"""The parts of the dashboards that need no hub: the paginated table (500 experiments) and
the read-only link the server extension keeps in a user's root folder."""

from __future__ import annotations

import html
import os
import re

from fedhub.extensions.server.dashboards import SOURCE, available, link_dashboards
from fedhub.extensions.widgets.table import PagedTable, page_count, page_rows

ROWS = [[f"exp{i:03d}", f"run {i}", "completed"] for i in range(500)]


def rows_shown(table: PagedTable) -> list[str]:
    return re.findall(r"<td>(exp\d+)</td>", table.table.value)


def test_page_helpers_clamp_to_the_pages_that_exist():
    assert page_count(500, 25) == 20 and page_count(501, 25) == 21
    assert page_count(0, 25) == 1  # an empty table is one empty page
    assert page_rows(ROWS, 0, 25)[0][0] == "exp000"
    assert page_rows(ROWS, 19, 25)[-1][0] == "exp499"
    assert page_rows(ROWS, 99, 25) == page_rows(ROWS, 19, 25)
    assert page_rows(ROWS, -3, 25) == page_rows(ROWS, 0, 25)


def test_500_experiments_are_shown_25_at_a_time():
    table = PagedTable(["id", "name", "status"], ROWS, page_size=25, table_class="fedhub-runs")
    assert rows_shown(table) == [f"exp{i:03d}" for i in range(25)]
    assert "data-pages='20'" in table.table.value and "class='fedhub-runs'" in table.table.value
    assert table.previous.disabled and not table.next.disabled
    table.next.click()
    assert rows_shown(table)[0] == "exp025" and table.label.value.startswith("page 2 of 20")
    table.show(19)
    assert rows_shown(table) == [f"exp{i:03d}" for i in range(475, 500)]
    assert table.next.disabled and not table.previous.disabled
    table.next.click()  # nowhere to go: stays on the last page
    assert table.page == 19


def test_cells_are_escaped():
    table = PagedTable(["name"], [["<img src=x onerror=alert(1)>"]])
    assert html.escape("<img src=x onerror=alert(1)>") in table.table.value
    assert "<img" not in table.table.value


def test_the_bundled_dashboards_are_linked_into_the_root_folder(tmp_path):
    assert {"experiments.ipynb", "usage.ipynb"} <= set(available())
    link = link_dashboards(tmp_path)
    assert link == tmp_path / "dashboards" and os.readlink(link) == str(SOURCE)
    assert (link / "usage.ipynb").read_bytes() == (SOURCE / "usage.ipynb").read_bytes()
    assert link_dashboards(tmp_path) == link  # idempotent


def test_a_stale_link_is_repointed_and_the_users_own_folder_kept(tmp_path):
    (tmp_path / "dashboards").symlink_to(tmp_path / "old-site-packages")
    assert os.readlink(link_dashboards(tmp_path)) == str(SOURCE)
    mine = tmp_path / "other"
    (mine / "dashboards").mkdir(parents=True)
    (mine / "dashboards" / "notes.ipynb").write_text("{}")
    assert link_dashboards(mine) is None
    assert [p.name for p in (mine / "dashboards").iterdir()] == ["notes.ipynb"]


def test_the_round_chart_plots_delay_and_queue_for_a_traffic_run():
    from fedhub.extensions.widgets.chart import render

    fl_run = [{"round": 1, "test_accuracy": 0.5, "test_loss": 1.2}]
    assert "accuracy 0.500" in render(fl_run, 10) and "test accuracy" in render(fl_run, 10)
    rl_run = [
        {"round": 1, "reward": -1.5, "mean_delay": 48.0, "queue": 25.0},
        {"round": 2, "reward": -1.1, "mean_delay": 40.0, "queue": 20.0},
    ]
    svg = render(rl_run, 10)
    assert "delay 40.0 s" in svg and "queue 20.0" in svg and "reward -1.10" in svg
    assert "mean delay (s)" in svg and "accuracy" not in svg
    # both rounds are drawn: two points on each line
    for line in re.findall(r'points="([^"]*)"', svg):
        assert len(line.split()) == 2
