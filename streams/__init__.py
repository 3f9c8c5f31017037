"""The Faust pipeline. Reading order: ``pricing`` (the cost rule, plain functions),
``price_step`` (one message in, a priced record or a dead letter out), ``topics``,
``price_agent`` (the agent), ``app`` (``create_app(settings)`` and ``run_worker``)."""

__all__: list[str] = []
