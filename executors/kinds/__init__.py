"""Task kinds: what one attempt runs.

    python.py   a registered `@task`, by name (the default kind)
    shell.py    a command, without a shell unless asked; output captured; the process group killed on timeout
    http.py     one HTTP request with httpx; the body bounded; 4xx final, 5xx/408/429 and network errors retryable
    egress.py   where an http task may connect: global addresses plus ORCH_HTTP_ALLOW, checked at connect time
    errors.py   how an attempt fails: error types and whether a retry may help
"""
