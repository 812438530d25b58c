"""Processing pipeline: Level 1/2/3/4 input → Level 4 and Level 5, as a plan and its steps.

Layout (one concept per module):

* :mod:`~opencmap.pipeline.run` — :func:`~opencmap.pipeline.run.run_pipeline`, which runs the public
  steps of a :class:`~opencmap.pipeline.run.PipelineRun` in order (each runnable on its own):
  ``deconvolve`` (Level 1 → 2) → ``reach_level3`` (Level 1/2 → 3) → ``zscore_and_collapse``
  (Level 3 → 4 → 5, filled in place) → ``build_cgs`` → ``finish`` (final files, manifest).
  Every start level takes the same path from Level 3 on.
* :mod:`~opencmap.pipeline.plan` — the run plan (plates, replicate sets, output columns) and the
  run identity, computed once.
* :mod:`~opencmap.pipeline.params` — :class:`~opencmap.pipeline.params.PipelineParams`, every
  step's parameters (the Level 1 → 3 steps' nested: ``dpeak``, ``flip``, ``liss``, ``censor``),
  reachable from ``run_pipeline(params=...)`` and ``opencmap process --params FILE``.
* :mod:`~opencmap.pipeline.inputs` (instance and gene tables), :mod:`~opencmap.pipeline.workfolder`
  (resumable work folder), :mod:`~opencmap.pipeline.manifest` (``manifest.json``).
* :mod:`~opencmap.pipeline.level1` (LXB plates → Level 2) and :mod:`~opencmap.pipeline.level3`
  (Level 2 → 3 per plate; where plates are read from).
* :mod:`~opencmap.pipeline.tasks` — the steps' per-plate and per-set work as module-level task
  functions, run by a distributed backend (``run_pipeline(backend=...)``) in other processes.
* One step per module: :mod:`~opencmap.pipeline.deconvolve`, :mod:`~opencmap.pipeline.flip`,
  :mod:`~opencmap.pipeline.liss`, :mod:`~opencmap.pipeline.censor`, :mod:`~opencmap.pipeline.qnorm`,
  :mod:`~opencmap.pipeline.infer`, :mod:`~opencmap.pipeline.zscore`, :mod:`~opencmap.pipeline.modz`,
  :mod:`~opencmap.pipeline.signatures`, :mod:`~opencmap.pipeline.qc`, :mod:`~opencmap.pipeline.cgs`;
  :mod:`~opencmap.pipeline.levels` tells Level 4 from Level 3.

Words: a plate's z-scores are taken against its *reference wells* (all wells, or the vehicle
wells); the file reads and writes of a run overlap computing in an *I/O worker* thread;
"background" is the query's null distribution only (:mod:`opencmap.query.background`).
"""
