"""The Textual terminal chat (``conclave chat``): build it with :func:`create_app`.

The app consumes run events only. What runs a question and what talks to the knowledge store are injected, so
tests drive the real UI with scripted event streams or scripted models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conclave.settings import Settings, load_settings

if TYPE_CHECKING:
    from conclave.tui.app import ConclaveApp
    from conclave.tui.backend import Knowledge, ResolveModels, RunQuestion

    from conclave.sessions import SessionStore

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None,
    *,
    session_id: str | None = None,
    runner: RunQuestion | None = None,
    clients: dict[str, Any] | None = None,
    knowledge: Knowledge | None = None,
    store: SessionStore | None = None,
    pinned: frozenset[str] | set[str] = frozenset(),
    models: ResolveModels | None = None,
) -> ConclaveApp:
    """The chat app.

    ``runner`` replaces how a question is run (default: the real methods; ``clients`` then gives each role a
    ready ``ChatCompletionClient``, e.g. a scripted one in tests). ``store`` defaults to
    ``settings.sessions_path``. ``session_id`` (or a unique prefix) resumes a session: its method, collection and
    models come back, except those named in ``pinned`` (set on the command line). An unknown id raises
    :class:`conclave.sessions.SessionNotFound` before the app starts. ``models`` tells the status bar which
    model each role will use before the first answer (default: resolved from the settings when neither
    ``runner`` nor ``clients`` is given).
    """
    from conclave.tui.app import ConclaveApp
    from conclave.tui.backend import StoreKnowledge, model_runner, resolve_models

    from conclave.sessions import SessionStore

    if settings is None:
        from conclave.workflows.methods import check_method_setting

        settings = check_method_setting(load_settings(), "settings")
    store = store or SessionStore.open(settings)
    if session_id is not None:
        session_id = store.resolve(session_id)
    return ConclaveApp(
        settings,
        store=store,
        runner=runner or model_runner(clients),
        knowledge=knowledge or StoreKnowledge(),
        session_id=session_id,
        pinned=frozenset(pinned),
        models=models or (resolve_models if runner is None and clients is None else None),
    )
