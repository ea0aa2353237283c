"""The gateway's experiment refusals that keep an experiment from being an unapproved promotion:
the control (the first variant) must be the version production serves now, and the other arms
together take at most the configured share of the units."""

from ragops_gateway.experiments import ExperimentIn, refusal
from ragops_schemas import VersionPromoted, VersionRegistered
from ragops_schemas.experiments import ExperimentBook
from ragops_schemas.registry import Registry
from ragops_shared.prompts import seed_prompts
from tests.helpers import PRODUCER


def seeded() -> Registry:
    """The seed prompt versions (rag-answer 1, 2 and 3) registered, none promoted."""
    registry = Registry()
    for seed in seed_prompts():
        registry.apply(
            VersionRegistered(
                producer=PRODUCER, kind="prompt", name=seed.name, version=str(seed.version), prompt=seed.body()
            )
        )
    return registry


def prompt_experiment(*arms: tuple[str, int]) -> ExperimentIn:
    return ExperimentIn.model_validate(
        {
            "target": "prompt",
            "target_name": "rag-answer",
            "unit": "request",
            "reason": "A/B",
            "variants": [{"name": f"v{version}", "version": version, "weight": weight} for version, weight in arms],
        }
    )


def why(body: ExperimentIn, registry: Registry, cap: int = 50) -> str | None:
    refused = refusal(body, registry, ExperimentBook(), max_candidate_percent=cap)
    return None if refused is None else f"{refused.status_code} {refused}"


def test_the_control_is_what_production_serves_now() -> None:
    registry = seeded()
    # No production alias: production serves the highest seed version (3).
    assert "422" in (why(prompt_experiment(("1", 50), ("3", 50)), registry) or "")
    assert why(prompt_experiment(("3", 50), ("1", 50)), registry) is None
    registry.apply(VersionPromoted(producer=PRODUCER, kind="prompt", name="rag-answer", version="1", reason="approved"))
    # The reviewer's bypass: 99% to the unapproved version 2 named as the "control".
    refused = why(prompt_experiment(("2", 99), ("1", 1)), registry)
    assert refused is not None and refused.startswith("422") and "serves version 1, not 2" in refused
    assert why(prompt_experiment(("1", 50), ("2", 50)), registry) is None


def test_the_candidate_arms_are_capped_together() -> None:
    registry = seeded()
    refused = why(prompt_experiment(("3", 40), ("1", 60)), registry)
    assert refused is not None and refused.startswith("422") and "at most 50%" in refused
    assert why(prompt_experiment(("3", 90), ("1", 10)), registry, cap=10) is None
    assert "at most 10%" in (why(prompt_experiment(("3", 89), ("1", 11)), registry, cap=10) or "")
