"""The `reunite` command line: one typer app with a sub-command group per area."""

import typer

from service.cli.audit import audit_app
from service.cli.calibrate import calibrate
from service.cli.demo import demo
from service.cli.evaluate import evaluate
from service.cli.match import match_app
from service.cli.models import models_app
from service.cli.ops import api, migrate
from service.cli.serve import admin_app, serve
from service.cli.worker import beat, worker

app = typer.Typer(no_args_is_help=True, help="Reunite: face matching for vetted NGOs, with human review.")
app.add_typer(match_app, name="match")
app.add_typer(admin_app, name="admin")
app.add_typer(audit_app, name="audit")
app.add_typer(models_app, name="models")
app.command("serve")(serve)
app.command("api")(api)
app.command("migrate")(migrate)
app.command("worker")(worker)
app.command("beat")(beat)
app.command("evaluate")(evaluate)
app.command("calibrate")(calibrate)
app.command("demo")(demo)
