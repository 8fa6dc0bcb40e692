"""Azure Functions entry points (Python v2 model): bindings only, all logic lives in ``qualys/``.

Nothing here touches the network or credentials at import time.
"""

from __future__ import annotations

import json

import azure.functions as func

app = func.FunctionApp()


@app.timer_trigger(schedule="%QUALYS_SYNC_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def qualys_sync(timer: func.TimerRequest) -> None:
    """Scheduled sync; a run cut short by the function timeout is resumed by the next one."""
    from qualys.hosting.scheduled import run_scheduled_sync

    run_scheduled_sync(past_due=timer.past_due)


def _json(status: int, payload: dict[str, object]) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(payload), status_code=status, mimetype="application/json")


@app.route(route="qualys/validate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def qualys_validate(req: func.HttpRequest) -> func.HttpResponse:
    """Check the stored connection, or the one in the body, and say what is wrong in plain words."""
    from qualys.hosting.endpoints import handle_validate

    return _json(*handle_validate(req.get_body()))


@app.route(route="qualys/connect", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def qualys_connect(req: func.HttpRequest) -> func.HttpResponse:
    """Validate the body's connection and store it in Key Vault when it works."""
    from qualys.hosting.endpoints import handle_connect

    return _json(*handle_connect(req.get_body()))
