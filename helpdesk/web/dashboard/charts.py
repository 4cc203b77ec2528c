"""Chart geometry computed here so that the Jinja macros only draw: no JS, no chart library."""

from __future__ import annotations

from typing import Any

from helpdesk.web.dashboard.figures import human

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
TREND = {"width": 760, "height": 220, "left": 56, "right": 44, "top": 14, "bottom": 30}


def trend_chart(days: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars of incoming messages per day with the first-response median as a line over them."""
    box = TREND
    plot_w = box["width"] - box["left"] - box["right"]
    plot_h = box["height"] - box["top"] - box["bottom"]
    step = plot_w / max(len(days), 1)
    volume_max = max([d["messages_in"] for d in days] + [1])
    median_max = max([d["first_response"]["median_s"] or 0 for d in days] + [1])
    bottom = box["top"] + plot_h
    bars, points, labels = [], [], []
    every = max(1, len(days) // 10)
    for index, day in enumerate(days):
        x = box["left"] + index * step
        height = plot_h * day["messages_in"] / volume_max
        median = day["first_response"]["median_s"]
        title = f"{day['day']}: {day['messages_in']} in, first response median {human(median)}"
        bars.append(
            {
                "x": x + step * 0.15,
                "y": bottom - height,
                "w": step * 0.7,
                "h": height,
                "title": title,
            }
        )
        if median is not None:
            points.append((x + step / 2, bottom - plot_h * median / median_max, title))
        if index % every == 0:
            labels.append({"x": x + step / 2, "text": day["day"][5:]})
    return {
        **box,
        "bottom_y": bottom,
        "right_x": box["width"] - box["right"],
        "bars": bars,
        "points": points,
        "line": " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points),
        "labels": labels,
        "volume_max": volume_max,
        "median_max": human(median_max if median_max > 1 else None),
        "empty": not any(d["messages_in"] or d["first_response"]["count"] for d in days),
    }


def heatmap_chart(cells: list[list[int]]) -> dict[str, Any]:
    """7 × 24 squares whose shade is the share of the busiest hour."""
    peak = max(max(row) for row in cells) or 1
    squares = [
        {
            "day": day,
            "hour": hour,
            "count": count,
            "opacity": round(0.08 + 0.92 * count / peak, 3) if count else 0,
            "title": f"{WEEKDAYS[day]} {hour:02d}:00 · {count} message{'s' * (count != 1)}",
        }
        for day, row in enumerate(cells)
        for hour, count in enumerate(row)
    ]
    return {
        "squares": squares,
        "weekdays": WEEKDAYS,
        "peak": peak,
        "empty": not any(map(any, cells)),
    }
