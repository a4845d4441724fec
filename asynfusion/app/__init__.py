"""What the Gradio page does, without the UI (app.py lays it out).

    handlers.py  check the request, generate, render, time it, tidy up: `generate` and `compare`
    texts.py     what the page says: the introduction, the provenance note, the timing tables and chart

Nothing here imports Gradio, so the handlers are tested directly.
"""
