"""The live table on its own: what it draws follows the cells it is given, cell by cell,
through its render cache, its quiet batched writes and its plain-text cells."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tui.widgets.live_table import LiveTable

COLUMNS = [("name", "Name"), ("latency", "Latency")]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LiveTable(COLUMNS, id="t")


def drawn(table: LiveTable) -> list[str]:
    """The table's lines as the screen gets them (header first)."""
    return ["".join(segment.text for segment in table.render_line(y))
            for y in range(len(table.row_keys) + 1)]


async def test_a_changed_cell_is_drawn_again_and_the_others_stay() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(LiveTable)
        table.sync_rows({"a": ("alpha", "1.0 ms"), "b": ("beta", "2.0 ms")})
        await pilot.pause()
        assert "1.0 ms" in drawn(table)[1] and "2.0 ms" in drawn(table)[2]
        assert table.sync_rows({"a": ("alpha", "1.5 ms"), "b": ("beta", "2.0 ms")}) == 1
        await pilot.pause()
        lines = drawn(table)
        assert "1.5 ms" in lines[1] and "1.0 ms" not in lines[1]
        assert "beta" in lines[2] and "2.0 ms" in lines[2]
        assert table.get_row("a") == ["alpha", "1.5 ms"]


async def test_text_that_outgrows_its_column_widens_it() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(LiveTable)
        table.sync_rows({"a": ("alpha", "1 ms")})
        await pilot.pause()
        table.sync_rows({"a": ("alpha", "12345.6 ms")})
        await pilot.pause()
        assert "12345.6 ms" in drawn(table)[1]


async def test_cells_are_plain_text_never_markup() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(LiveTable)
        table.sync_rows({"a": ("[b]odd[/b] name", "-")})
        await pilot.pause()
        assert "[b]odd[/b] name" in drawn(table)[1]


async def test_rows_come_and_go_and_the_cursor_stays_on_its_row() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(LiveTable)
        table.sync_rows({k: (k, "-") for k in ("a", "b", "c")})
        await pilot.pause()
        table.move_cursor(row=2)
        assert table.selected_key == "c"
        table.sync_rows({"b": ("b", "-"), "c": ("c", "1 ms")})  # "a" went away
        await pilot.pause()
        assert table.row_keys == ["b", "c"]
        assert table.selected_key == "c"
        assert [line.split()[0] for line in drawn(table)[1:]] == ["b", "c"]


class WideApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LiveTable([("name", "Name", 0), ("address", "Address", 2), ("role", "Role", 1),
                         ("state", "State", 0)], id="t")


async def test_less_important_columns_fold_away_when_narrow_and_come_back() -> None:
    app = WideApp()
    row = ("node-1", "127.0.0.61:14983", "secondary", "up")
    async with app.run_test(size=(100, 10)) as pilot:
        table = app.query_one(LiveTable)
        table.sync_rows({"a": row, "b": ("node-2", "127.0.0.62:14983", "primary", "up")})
        table.move_cursor(row=1)
        await pilot.pause()
        assert table.shown_columns == ["name", "address", "role", "state"]
        await pilot.resize_terminal(30, 10)  # 9+18+11+7 does not fit; 9+11+7 does
        await pilot.pause()
        assert table.shown_columns == ["name", "role", "state"]
        assert "127.0.0.61" not in drawn(table)[1] and "secondary" in drawn(table)[1]
        assert table.cells("a") == row  # what is folded is kept
        assert table.selected_key == "b"  # and the cursor stays on its row
        await pilot.resize_terminal(20, 10)  # rank 0 columns never fold
        await pilot.pause()
        assert table.shown_columns == ["name", "state"]
        await pilot.resize_terminal(100, 10)
        await pilot.pause()
        assert table.shown_columns == ["name", "address", "role", "state"]
        assert "127.0.0.61:14983" in drawn(table)[1]
        assert table.selected_key == "b"
