"""``rollback_prompt``: promote the earlier prompt version whose answers scored better, read
from the evaluation scores in ClickHouse."""

import asyncio

from ragops_analytics import queries
from ragops_schemas import RetrainingRequested, VersionPromoted
from ragops_trainer.context import ActionRejected, TrainerContext


async def run(ctx: TrainerContext, request: RetrainingRequested) -> None:
    if ctx.analytics is None:
        raise ActionRejected("no ClickHouse to read prompt quality from (RAGOPS_ANALYTICS_*)")
    name, metric = ctx.settings.prompt_name, ctx.settings.quality_metric
    rows = await asyncio.to_thread(queries.prompt_quality, ctx.analytics, name, metric)
    production = ctx.registry.alias("prompt", name)
    quality = {row.version: (row.mean, row.answers) for row in rows}
    current = (
        production.ref.version if production else (max(rows, key=lambda r: r.last_served).version if rows else None)
    )
    if current is None or current not in quality:
        raise ActionRejected(f"no {metric} scores for prompt {name!r} in production yet")
    last_served = {row.version: row.last_served for row in rows}
    better = [
        (last_served[version], mean, version)
        for version, (mean, n) in quality.items()
        if version != current
        and n >= ctx.settings.min_answers
        and mean > quality[current][0]
        and not ctx.registry.is_retired("prompt", name, version)
    ]
    if not better:
        raise ActionRejected(
            f"no earlier version of prompt {name!r} scored better {metric} than version {current} "
            f"({quality[current][0]:.3f}) over at least {ctx.settings.min_answers} answers"
        )
    _, mean, version = max(better)  # the last version that served and was better
    await ctx.started(request, prompt=name, current_version=current)
    await ctx.publish(
        request.caused(
            VersionPromoted,
            ctx.producer,
            scope="prompt",
            kind="prompt",
            name=name,
            version=version,
            previous_version=current,
            request_event_id=str(request.event_id),
            reason=(
                f"rolled back: version {version} scored {metric} {mean:.3f} vs {quality[current][0]:.3f} for {current}"
            ),
            metrics={f"{metric}_restored": mean, f"{metric}_replaced": quality[current][0]},
        )
    )
