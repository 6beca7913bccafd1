"""`influcoder serve`: a warm index behind a JSON API and an explorer page, one front door beside the CLI.

- `limits`: `ServeLimits`, what one request may ask for and how requests are batched
- `warm_index`: `WarmIndex`, an index opened once for serving (what the library rereads per call, read once)
- `service`: `IndexService`, the library calls the endpoints make (attribute, score, samples), no web code
- `results`: the JSON shape of an answer (hits, flags, histograms), shared by the API and the report
- `report`: `write_report`, the explorer page with one `attribute` run's results embedded (no server)
- `batching`: `MicroBatcher`, concurrent requests gathered into one model call on one worker thread
- `schemas`: the request and response bodies (pydantic: validation and the OpenAPI schema)
- `errors`: every failure as a JSON body naming the field; the body-size limit; the 500 boundary
- `app`: `create_app`, the routes; `run_server`, uvicorn on it
- `static/`: the explorer page (HTML, CSS, JS; no build step, nothing fetched from elsewhere)

FastAPI and uvicorn come with the `serve` extra (``pip install "influcoder[serve]"``); only `app`, `errors` and
`schemas` need them (pydantic comes with FastAPI), so `attribute --report` works without the extra. Nothing
below the CLI imports this package.
"""
