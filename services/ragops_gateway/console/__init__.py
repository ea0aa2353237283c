"""The console: server-rendered pages of the platform's data inside the gateway, behind the
same authentication (:mod:`ragops_gateway.console.session`, :mod:`ragops_gateway.console.routes`)."""

from ragops_gateway.console.routes import add_console_routes
from ragops_gateway.console.session import Sessions

__all__ = ["Sessions", "add_console_routes"]
