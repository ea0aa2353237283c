"""The trainer's actions, one module each; every module's ``run(ctx, request)`` acts on one
``RetrainingRequested``, publishing each step as it happens, and raises
:class:`~ragops_trainer.context.ActionRejected` when the request cannot be acted on."""
