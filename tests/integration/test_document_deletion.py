"""Document deletion end to end, on a real broker with the real services (ingestion, embedding
with the packaged model, the indexer/retrieval on Qdrant Edge, generation) and the gateway on a
real port: two documents are indexed, a question answered by one of them retrieves its chunk
and cites it; the document is deleted (through the CLI, then the HTTP route); the same question
then retrieves and cites nothing of it, the other document still serves; a deletion only ever
touches the caller's tenant; and the document submitted again is indexed again, not
acknowledged as unchanged."""

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from ragops.cli import app as cli
from ragops.client import PlatformClient
from ragops_embedding.app import create_app as embedding_app
from ragops_embedding.settings import EmbeddingSettings
from ragops_gateway.app import create_app as gateway_app
from ragops_gateway.settings import GatewaySettings
from ragops_generation.app import create_app as generation_app
from ragops_generation.settings import GenerationSettings
from ragops_ingestion.app import create_app as ingestion_app
from ragops_ingestion.settings import IngestionSettings
from ragops_privacy.app import create_app as privacy_app
from ragops_privacy.settings import PrivacySettings
from ragops_retrieval.app import create_app as retrieval_app
from ragops_retrieval.settings import RetrievalSettings
from ragops_schemas import AnswerGenerated, ContextRetrieved, DocumentIndexed
from ragops_shared.identity import ApiKeyStore, Role
from ragops_shared.settings import KafkaSettings, PlatformSettings
from tests.integration.services import running, watching

pytestmark = [pytest.mark.kafka, pytest.mark.model, pytest.mark.qdrant, pytest.mark.slow]

TENANT, OTHER = "acme", "globex"
LYON = "The acme shipping handbook: parcels leave the warehouse in Lyon every Tuesday morning at seven."
OSLO = "The acme finance handbook: invoices are approved by the finance team in Oslo within five days."
QUESTION = "When do parcels leave the warehouse in Lyon?"


@contextmanager
def serving(settings: GatewaySettings) -> Iterator[str]:
    """The gateway on a free local port, in a thread of its own (its own event loop): its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(gateway_app(settings), log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        for _ in range(600):  # its lifespan connects to the broker first
            if server.started:
                break
            threading.Event().wait(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


@asynccontextmanager
async def pipeline(kafka: KafkaSettings, data_dir: Path) -> AsyncIterator[None]:
    platform = {"data_dir": data_dir, "torch_threads": 1}
    async with AsyncExitStack() as stack:
        for app in (
            privacy_app(PrivacySettings(kafka=kafka, platform=platform)),  # documents and questions arrive on intake
            retrieval_app(RetrievalSettings(kafka=kafka, platform=platform)),
            ingestion_app(IngestionSettings(kafka=kafka)),
            embedding_app(EmbeddingSettings(kafka=kafka, platform=platform)),
            generation_app(GenerationSettings(kafka=kafka, platform=platform, max_new_tokens=8)),
        ):
            await stack.enter_async_context(running(app))
        yield


def key(data_dir: Path, tenant: str, *roles: Role) -> str:
    return ApiKeyStore(data_dir / "auth" / "api-keys.json").create("test", tenant, list(roles))[1]


async def ask(kafka: KafkaSettings, gateway: httpx.AsyncClient, credential: str) -> tuple[AnswerGenerated, set[str]]:
    """The answer to :data:`QUESTION` through the gateway, and the documents of the chunks
    retrieved for it."""
    async with watching(kafka, [ContextRetrieved]) as seen:
        response = await gateway.post(
            "/v1/queries",
            json={"question": QUESTION, "top_k": 2, "timeout_s": 240},
            headers={"authorization": f"Bearer {credential}"},
        )
        assert response.status_code == 200, response.text
        answer = AnswerGenerated.model_validate(response.json())
        [retrieved] = [e for e in seen if isinstance(e, ContextRetrieved) and e.request_id == answer.request_id]
    return answer, {context.document_id for context in retrieved.contexts}


async def test_a_deleted_document_is_never_retrieved_nor_cited_again(kafka: KafkaSettings, tmp_path: Path) -> None:
    producer, analyst = key(tmp_path, TENANT, Role.PRODUCER), key(tmp_path, TENANT, Role.ANALYST)
    other_admin = key(tmp_path, OTHER, Role.ADMIN)
    platform = PlatformSettings(data_dir=tmp_path)
    async with pipeline(kafka, tmp_path), PlatformClient(kafka) as client:
        documents = [
            client.document("lyon", LYON).model_copy(update={"tenant": TENANT}),
            client.document("oslo", OSLO).model_copy(update={"tenant": TENANT}),
            client.document("lyon", LYON).model_copy(update={"tenant": OTHER}),  # globex's own "lyon"
        ]
        outcomes = [outcome for _, outcome in await client.ingest(documents, timeout_s=240)]
        assert all(isinstance(o, DocumentIndexed) and not o.unchanged for o in outcomes), outcomes

        with serving(GatewaySettings(kafka=kafka, platform=platform, max_timeout_s=240)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=300) as gateway:
                answer, retrieved = await ask(kafka, gateway, producer)
                assert "lyon" in retrieved and "lyon" in answer.lineage.document_versions, "answered from lyon"

                # Not the analyst's to delete; another tenant's admin deletes its own "lyon" only.
                refused = await gateway.delete("/v1/documents/lyon", headers={"authorization": f"Bearer {analyst}"})
                assert refused.status_code == 403
                theirs = await gateway.delete(
                    "/v1/documents/lyon", params={"wait_s": 120}, headers={"authorization": f"Bearer {other_admin}"}
                )
                assert theirs.status_code == 200 and sum(theirs.json()["removed_points"].values()) == 1, theirs.text
                answer, retrieved = await ask(kafka, gateway, producer)
                assert "lyon" in retrieved, "acme's lyon untouched by globex's deletion"

                # The CLI, through the gateway, with the producer's credential.
                env = {"RAGOPS_GATEWAY_URL": url, "RAGOPS_API_KEY": producer}
                result = await asyncio.to_thread(
                    CliRunner().invoke, cli, ["delete-document", "lyon", "--wait", "120"], env=env
                )
                assert result.exit_code == 0, result.output
                assert "1 points removed" in result.output

                answer, retrieved = await ask(kafka, gateway, producer)
                assert retrieved == {"oslo"}, "nothing of the deleted document is retrieved"
                assert set(answer.lineage.document_versions) == {"oslo"}, "nor cited"

                # Deleting again: accepted, nothing left to remove.
                again = await gateway.delete(
                    "/v1/documents/lyon", params={"wait_s": 120}, headers={"authorization": f"Bearer {producer}"}
                )
                assert again.status_code == 200 and sum(again.json()["removed_points"].values()) == 0

        # Submitted again, the same content is indexed again (the views forgot it), not "unchanged".
        [(_, back)] = await client.ingest(
            [client.document("lyon", LYON).model_copy(update={"tenant": TENANT})], timeout_s=240
        )
        assert isinstance(back, DocumentIndexed) and not back.unchanged, back
