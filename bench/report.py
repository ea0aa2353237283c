"""Rendering the rows: a rich table on the terminal, the same table as Markdown (kept in the
JSON report for a closing note), and each row's checks, notes and sizes."""

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

COLUMNS = (
    "row",
    "unit",
    "ours: median [min-max]",
    "baseline: median [min-max]",
    "ratio ours/base [spread]",
    "goal",
    "verdict",
)


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def _side(side: dict | None) -> str:
    if not side:
        return "-"
    text = f"{_number(side['median'])} [{_number(side['min'])}-{_number(side['max'])}]"
    if "p95" in side:
        text += f" p95 {_number(side['p95'])}"
    return f"{text} n={side['n']}"


def _ratio(ratio: dict | None) -> str:
    return "-" if not ratio else f"{ratio['median']:.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}]"


def cells(row: dict) -> list[str]:
    verdict = "PASS" if row["passed"] else ("ERROR" if row.get("error") else "MISS")
    return [
        f"{row['id']} {row['title']}",
        row["unit"],
        _side(row["ours"]),
        _side(row["baseline"]),
        _ratio(row["ratio"]),
        row["goal"],
        verdict,
    ]


def print_table(rows: Sequence[dict], console: Console, title: str) -> None:
    table = Table(title=title, show_lines=True)
    for name in COLUMNS:
        table.add_column(name, justify="right" if "median" in name or "ratio" in name else "left")
    for row in rows:
        values = cells(row)
        colour = "green" if row["passed"] else "red"
        table.add_row(*values[:-1], f"[bold {colour}]{values[-1]}[/]")
    console.print(table)


def print_details(rows: Sequence[dict], console: Console) -> None:
    """Per row: what each goal check measured, why a miss misses, and the sizes used."""
    for row in rows:
        console.print(f"[bold]{row['id']}[/] {row['title']} ({row.get('seconds', 0):.0f} s)")
        sides = [
            f"{name} = {row[key]['label']}" for name, key in (("ours", "ours"), ("baseline", "baseline")) if row[key]
        ]
        if sides:
            console.print("  " + "; ".join(sides))
        for line in row.get("highlights", []):
            console.print(f"  {line}")
        for check in row["checks"]:
            console.print(f"  {'[green]ok[/]  ' if check['ok'] else '[red]MISS[/]'} {check['text']}")
        for note in row["notes"]:
            console.print(f"  [dim]note:[/] {note}")
        if row["sizes"]:
            console.print("  [dim]sizes:[/] " + ", ".join(f"{k}={v}" for k, v in row["sizes"].items()))


def markdown(rows: Sequence[dict]) -> str:
    """The table as GitHub Markdown (one line per row)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("\n", "<br>").replace("|", "/") for cell in cells(row)) + " |")
    return "\n".join(lines)
