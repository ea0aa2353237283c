"""``python -m chaos`` (``make chaos``): the embedded platform under load while services, the
broker and the sink are killed or stopped and poison records are injected, then a check that
nothing was lost, doubled or left stuck (see :mod:`chaos.run` and :mod:`chaos.checks`)."""
