"""Where the platform's events are analysed: ClickHouse, embedded (chDB) or a server.

``guard`` checks analyst SQL, ``store`` defines the engine interface that ``chdb_store``
and ``server_store`` implement, ``client`` reaches whichever engine the platform writes to
from another process, and ``queries`` holds every statement the platform itself runs: the
only module that names tables."""
