"""⑤–⑦ Executors: ready tasks become RQ jobs, workers run them, outcomes go back to the engine.

    dispatch.py    ⑤ RQDispatcher: one RQ job per task attempt, JSON-serialized, deterministic id
    jobs.py           OrchJob: a job may only call the one entry point (no arbitrary imports)
    runner.py      ⑥ run_task: the entry point; looks the task up by registered name and runs it
                   ⑦ reports started / succeeded / failed records to the results stream
    worker.py         `orch worker`: the fast loop (default) or RQ's SimpleWorker; graceful on SIGTERM
    rqworker.py       `orch worker --engine rq`: RQ's SimpleWorker with orch's job class and heartbeat
    fastpath.py       the fast loop's Redis side: claim (reliable queue, claim.lua), start, finish, release
    idle.py           waiting for jobs with BLMOVE (a waiter thread per queue for several queues)
    heartbeat.py      `<p>:worker:<name>` heartbeats and RQ's worker registry, from a thread
    recovery.py       handing back the jobs of dead workers (RQDispatcher.recover, pools)
    forking.py        one task in a forked child, killed past its timeout (`--fork-queues`)
    pool.py           `orch worker --concurrency N`: supervise, restart, kill overrunning workers
    queues.py         queue depths (metrics) and workers (`orch workers`)
"""
