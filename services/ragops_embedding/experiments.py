"""Sticky assignment of questions to the arms of the running experiment (the embedding
service is the first a question reaches after redaction, so every later stage reads the arm
from the event instead of computing it again).

A question takes part when an experiment is running (:meth:`ExperimentBook.running`: at most
one, the gateway refuses a second) and it carries a value for the experiment's unit: its
``user_id`` or ``session_id`` (both pseudonymized by the privacy service where configured:
the pseudonym is as stable as the id) or its ``request_id``. Its arm is
:meth:`ExperimentStarted.assign` under the platform's experiment key (HMAC-SHA256, RFC 2104):
stable across restarts and replicas that read one key, and nobody without the key can compute
or choose the arm of a unit. A question left out is counted in
``ragops_experiment_unassigned_total`` by reason and served by production.

The key: ``RAGOPS_EMBEDDING_EXPERIMENT_KEY_FILE`` (a mounted Secret in production), else the
embedded ``<data_dir>/keys/experiment.key``, 32 random bytes created once (mode 0600)."""

from collections.abc import Callable
from typing import Literal

from prometheus_client import Counter

from ragops_embedding.settings import EXPERIMENT_KEY_FILE, EmbeddingSettings
from ragops_schemas import QueryRedacted
from ragops_schemas.experiments import ExperimentAssignment, ExperimentBook, ExperimentStarted
from ragops_shared.pseudonyms import secret_key

Unassigned = Literal["no_user_id", "no_session_id", "pinned_prompt", "evaluation", "variant_unavailable"]
UNASSIGNED = Counter(
    "ragops_experiment_unassigned_total",
    "Questions asked while an experiment runs that were served by production, outside it, by reason "
    "(no_user_id, no_session_id: no value for its unit; pinned_prompt: the question names another prompt or "
    "a version; evaluation: an evaluation run's question; variant_unavailable: the arm's embedding model "
    "does not load).",
    ["experiment_id", "reason"],
)


def experiment_key(settings: EmbeddingSettings) -> bytes:
    """The assignment key's bytes (:func:`ragops_shared.pseudonyms.secret_key`).

    Raises:
        ValueError: the key file holds fewer than 32 bytes.
        OSError: it cannot be read (or the embedded one created)."""
    return secret_key(settings.experiment_key_file, settings.platform.data_dir / EXPERIMENT_KEY_FILE, "experiment")


def unit_value(experiment: ExperimentStarted, event: QueryRedacted) -> tuple[str, None] | tuple[None, Unassigned]:
    """``(value, None)``: the value of the experiment's unit on ``event``; ``(None, reason)``:
    why the question stays out of it."""
    if event.evaluation is not None:
        return None, "evaluation"
    # A question that names another prompt, or pins a version, asked for exactly that.
    if experiment.target == "prompt" and (
        event.prompt_version is not None or event.prompt_name not in (None, experiment.target_name)
    ):
        return None, "pinned_prompt"
    if experiment.unit == "user":
        return (event.user_id, None) if event.user_id else (None, "no_user_id")
    if experiment.unit == "session":
        return (event.session_id, None) if event.session_id else (None, "no_session_id")
    return event.request_id, None


def assign(
    book: ExperimentBook, key: bytes, event: QueryRedacted, count: Callable[[str, Unassigned], None] | None = None
) -> ExperimentAssignment | None:
    """The arm of ``event``'s unit in the running experiment; None when none runs or the
    question stays out (``count(experiment_id, reason)`` is told why; by default the
    ``ragops_experiment_unassigned_total`` counter)."""
    running = book.running()
    if not running:
        return None
    # One at a time (the gateway refuses a second); should two ever be read, the oldest holds.
    experiment = running[0]
    value, reason = unit_value(experiment, event)
    if value is None:
        assert reason is not None
        (count or unassigned)(experiment.experiment_id, reason)
        return None
    variant = experiment.assign(key, value)
    return ExperimentAssignment(
        experiment_id=experiment.experiment_id,
        target=experiment.target,
        target_name=experiment.target_name,
        variant=variant.name,
        version=variant.version,
    )


def unassigned(experiment_id: str, reason: Unassigned) -> None:
    """Count a question left out of ``experiment_id``."""
    UNASSIGNED.labels(experiment_id, reason).inc()
