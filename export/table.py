"""Plain-text tables for the command line and the demo."""


def render_table(header, rows):
    """Return `rows` under `header` as left-aligned columns of text."""
    rows = [tuple(str(cell) for cell in row) for row in [header, *rows]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def format_size(size_bytes):
    """Return a byte count in megabytes, as "1.08 MB"."""
    return f"{size_bytes / 1e6:.2f} MB"
