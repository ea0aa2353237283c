"""Which embedding model version embeds what: a replayed build names a version the service
must load, and a version it cannot find or whose files hold another version is refused
(``EventRejected``, which the subscriber dead-letters as ``rejected``), never embedded with
the wrong model."""

import pytest

from ragops_embedding.app import Embedders
from ragops_embedding.settings import EmbeddingSettings
from ragops_models.defaults import default_embedding_model_dir
from ragops_schemas import QueryRedacted, VersionRegistered
from ragops_schemas.experiments import ExperimentAssignment
from ragops_schemas.registry import Registry
from ragops_shared.broker import EventRejected
from tests.helpers import PRODUCER

pytestmark = pytest.mark.model


def test_unknown_or_mismatched_versions_are_refused_and_known_ones_load_once() -> None:
    embedders = Embedders(EmbeddingSettings(), Registry())
    embedders.warm_up()
    live = embedders.default.info
    assert live is not None and embedders.production is embedders.default
    assert embedders.version(live.version) is embedders.default, "a loaded version is not loaded again"
    with pytest.raises(EventRejected, match="unknown embedding model version 'nope'"):
        embedders.version("nope")
    with pytest.raises(EventRejected, match=f"holds embedding model version {live.version}, not other"):
        embedders.version("other", str(default_embedding_model_dir()))


def test_a_question_in_an_index_arm_is_embedded_by_the_model_its_index_was_built_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The canary of an index built by another embedding model version: its questions are
    embedded by that version (the vector must match the arm's collection); an arm whose model
    does not load serves production, without the arm."""
    registry = Registry()
    embedders = Embedders(EmbeddingSettings(), registry)
    embedders.warm_up()
    other = EmbeddingSettings(model_name="candidate").embedder()
    other.warm_up()
    loads = embedders.version
    monkeypatch.setattr(embedders, "version", lambda version, uri=None: other if version == "v2" else loads(version))
    for build, model in (("b-live", embedders.production.info.version), ("b-new", "v2"), ("b-gone", "nope")):
        registry.apply(
            VersionRegistered(
                producer=PRODUCER, kind="index", name="idx", version=build, metadata={"embedding_version": model}
            )
        )

    def arm(version: str) -> ExperimentAssignment:
        return ExperimentAssignment(
            experiment_id="exp-" + "0" * 20, target="index", target_name="idx", variant=version, version=version
        )

    questions = [QueryRedacted(producer=PRODUCER, request_id=f"r-{n}", question="Refunds?") for n in range(4)]
    embedded = embedders.queries(PRODUCER, questions, [arm("b-live"), arm("b-new"), arm("b-gone"), None])
    assert [event.request_id for event in embedded] == ["r-0", "r-1", "r-2", "r-3"], "in the order asked"
    assert [event.embedding.name for event in embedded] == [
        embedders.production.name,
        "candidate",
        *[embedders.production.name] * 2,
    ]
    assert [event.assignment.version if event.assignment else None for event in embedded] == [
        "b-live",
        "b-new",
        None,
        None,
    ]
