"""A DataTable kept current by diffing: rows are keyed by server id, only changed cells are
written, the cursor stays on its row, and the table is never cleared to refresh."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey


class LiveTable(DataTable[str]):
    DEFAULT_CSS = """
    LiveTable { height: 1fr; }
    """

    def __init__(self, columns: Sequence[tuple[str, str]], **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)  # type: ignore[arg-type]
        self._columns = list(columns)  # (key, label)
        self._shown: dict[str, tuple[str, ...]] = {}

    def on_mount(self) -> None:
        for key, label in self._columns:
            self.add_column(label, key=key)

    @property
    def row_keys(self) -> list[str]:
        return list(self._shown)

    def sync_rows(self, rows: Mapping[str, Sequence[str]]) -> int:
        """Make the table show ``rows`` (row key -> cells in column order); returns how many
        cells changed. New rows are added, gone rows removed, changed cells updated."""
        changed = 0
        with self.app.batch_update():
            for key in [k for k in self._shown if k not in rows]:
                self.remove_row(key)
                del self._shown[key]
                changed += 1
            for key, cells in rows.items():
                cells = tuple(cells)
                old = self._shown.get(key)
                if old is None:
                    self.add_row(*cells, key=key)
                    changed += len(cells)
                else:
                    for (column, _), before, after in zip(self._columns, old, cells):
                        if before != after:
                            # Re-measuring a column is the dear part of an update: only
                            # when the text may no longer fit.
                            grows = len(after) > self.columns[ColumnKey(column)].content_width
                            self.update_cell(key, column, after, update_width=grows)
                            changed += 1
                self._shown[key] = cells
        return changed

    def rebuild(self, rows: Mapping[str, Sequence[str]]) -> None:
        """Lay the rows out again in this order (when order itself changed), keeping the
        cursor on the same row key if it is still there, else at the same place."""
        key, place = self.selected_key, self.cursor_row
        self.clear()
        self._shown.clear()
        self.sync_rows(rows)
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
