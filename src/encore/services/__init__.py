"""The use cases (docs/architecture.md): one transaction each, jobs enqueued after commit.

Entry points (web routes, job handlers, CLI commands) call these functions with a
:class:`~encore.services.context.ServiceContext`; they never touch the database, the queue
or the models themselves. Modules by use case: ``accounts``, ``songs``, ``music`` (dispatch,
listening, rating), ``generation`` (the work behind the jobs), ``curation`` (rater quality,
dataset updates, purge), ``versions``, ``report``; ``jobs`` registers the job handlers.
"""
