"""⑤–⑦ Executors: ready tasks become RQ jobs, workers run them, outcomes go back to the engine.

    dispatch.py    ⑤ RQDispatcher: one RQ job per task attempt, JSON-serialized, deterministic id
    jobs.py           OrchJob: a job may only call the one entry point (no arbitrary imports)
    runner.py      ⑥ run_task: the entry point; looks the task up by registered name and runs it
                   ⑦ reports started / succeeded / failed records to the results stream
    worker.py         `orch worker`: an RQ worker with the above, graceful on SIGTERM
    queues.py         queue depths for metrics
"""
