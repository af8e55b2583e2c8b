"""A DataTable kept current by diffing: rows are keyed by server id, only changed cells are
written, the cursor stays on its row, and the table is never cleared to refresh.

On a narrow terminal the less important columns fold away (each column may carry a fold
rank: 0 never folds, higher ranks fold first) and come back when there is room."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.widgets import DataTable
from textual.widgets._data_table import RowRenderables
from textual.widgets.data_table import ColumnKey, RowKey


class LiveTable(DataTable[str]):
    DEFAULT_CSS = """
    LiveTable { height: 1fr; }
    """

    def __init__(self, columns: Sequence[tuple[str, str] | tuple[str, str, int]],
                 **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)  # type: ignore[arg-type]
        self._columns = [(c[0], c[1]) for c in columns]  # (key, label)
        self._fold_rank = [c[2] if len(c) > 2 else 0 for c in columns]  # type: ignore[misc]
        self._visible = list(range(len(self._columns)))  # indices of the columns shown
        self._shown: dict[str, tuple[str, ...]] = {}
        self._cells: LRUCache[tuple[object, ...], list[list[Segment]]] = LRUCache(4096)

    def on_mount(self) -> None:
        for key, label in self._columns:
            self.add_column(label, key=key)

    def on_resize(self) -> None:
        self._fit()

    @property
    def shown_columns(self) -> list[str]:
        return [self._columns[i][0] for i in self._visible]

    def cells(self, key: str) -> tuple[str, ...]:
        """Every cell of a row, in column order, folded columns included."""
        return self._shown[key]

    def _fit(self) -> None:
        """Fold columns, highest rank first, until the rest fit the width; unfold when
        there is room again."""
        width = self.size.width - 2  # room for the vertical scrollbar
        if width <= 0:
            return
        need = [max([len(label)] + [len(cells[i]) for cells in self._shown.values()])
                + 2 * self.cell_padding for i, (_, label) in enumerate(self._columns)]
        visible = list(range(len(self._columns)))
        for i in sorted(visible, key=lambda i: (-self._fold_rank[i], -i)):
            if sum(need[j] for j in visible) <= width or self._fold_rank[i] == 0:
                break
            visible.remove(i)
        if visible != self._visible:
            self._visible = visible
            self._lay_out_columns()

    def _lay_out_columns(self) -> None:
        key, place = self.selected_key, self.cursor_row
        rows = dict(self._shown)
        self.clear(columns=True)
        self._shown.clear()
        for i in self._visible:
            self.add_column(self._columns[i][1], key=self._columns[i][0])
        self._sync(rows)
        self._restore_cursor(key, place)

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> list[list[Segment]]:
        # DataTable renders every visible cell again after any update (its cache is keyed
        # by an update counter). A live table changes a cell or two per row, so cells are
        # kept by what they show: a cell whose text, place and look are unchanged is not
        # rendered again.
        if row_index < 0 or column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width,
                                        cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        key = (row_key, column_key, row_index, column_index, width, base_style, cursor, hover,
               self._show_hover_cursor, self._pseudo_class_state,
               self._data[row_key][column_key])
        lines = self._cells.get(key)
        if lines is None:
            lines = self._render_text_cell(row_index, column_index, base_style, width,
                                           cursor, hover, str(key[-1]))
            self._cells[key] = lines
        return lines

    def _render_text_cell(self, row_index: int, column_index: int, base_style: Style,
                          width: int, cursor: bool, hover: bool,
                          text: str) -> list[list[Segment]]:
        # What DataTable draws for a one-line plain-text cell (padding, then the text cut
        # or filled to the column, in the row's style and the cursor's), without the Rich
        # layout machinery it runs for any renderable: the dear part of a live tick.
        component_style, post_style = self._get_styles_to_render_cell(
            False, False, row_index < self.fixed_rows or column_index < self.fixed_columns,
            hover, cursor, self.show_cursor, self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css")
        style = (base_style + Style.from_meta({"row": row_index, "column": column_index})
                 + component_style + post_style)
        pad = " " * self.cell_padding
        inner = max(width - 2 * self.cell_padding, 0)
        line = pad + set_cell_size(text, inner) + pad
        return [[Segment(set_cell_size(line, width), style)]]

    def _compute_row_renderables(self, row_index: int) -> RowRenderables:
        # Cells are plain text, shown as they are: a server named "[red]x" is not markup,
        # and no markup parser runs for each cell of each redrawn row.
        if row_index < 0:
            return super()._compute_row_renderables(row_index)
        return RowRenderables(None, [Text(str(datum), no_wrap=True, end="")
                                     for datum in self.get_row_at(row_index)])

    @property
    def row_keys(self) -> list[str]:
        return list(self._shown)

    def sync_rows(self, rows: Mapping[str, Sequence[str]]) -> int:
        """Make the table show ``rows`` (row key -> cells in column order); returns how many
        cells changed. New rows are added, gone rows removed, changed cells updated."""
        with self.app.batch_update():
            changed, refit = self._sync(rows)
            if refit:
                self._fit()
        return changed

    def _sync(self, rows: Mapping[str, Sequence[str]]) -> tuple[int, bool]:
        changed = quiet = 0
        refit = False
        for key in [k for k in self._shown if k not in rows]:
            self.remove_row(key)
            del self._shown[key]
            changed += 1
            refit = True
        for key, cells in rows.items():
            cells = tuple(cells)
            old = self._shown.get(key)
            self._shown[key] = cells
            if old is None:
                self.add_row(*[cells[i] for i in self._visible], key=key)
                changed += len(cells)
                refit = True
                continue
            data = self._data[RowKey(key)]
            for i, (column, _) in enumerate(self._columns):
                before, after = old[i], cells[i]
                if before == after:
                    continue
                changed += 1
                column_key = ColumnKey(column)
                shown = self.columns.get(column_key)
                if shown is None:  # folded away
                    refit = refit or len(after) > len(before)
                elif len(after) > shown.content_width:
                    # Re-measuring a column is dear: only when the text outgrows it.
                    self.update_cell(key, column, after, update_width=True)
                    refit = True
                else:
                    # What update_cell does, less its refresh per cell: hundreds of
                    # cells change at once here, and one refresh below does.
                    data[column_key] = after
                    quiet += 1
        if quiet:
            self._update_count += 1
            self.refresh()
        return changed, refit

    def rebuild(self, rows: Mapping[str, Sequence[str]]) -> None:
        """Lay the rows out again in this order (when order itself changed), keeping the
        cursor on the same row key if it is still there, else at the same place."""
        key, place = self.selected_key, self.cursor_row
        self.clear()
        self._shown.clear()
        self.sync_rows(rows)
        self._restore_cursor(key, place)

    def _restore_cursor(self, key: str | None, place: int) -> None:
        keys = self.row_keys
        if keys:
            self.move_cursor(row=keys.index(key) if key in keys else
                             min(max(place, 0), len(keys) - 1))

    @property
    def selected_key(self) -> str | None:
        if not self._shown or self.cursor_row < 0:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # an empty table has no cell under the cursor
            return None
