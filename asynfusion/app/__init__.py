"""What the Gradio page does (app.py lays it out).

    handlers.py    check the request, generate, render, time it, tidy up: `generate_steps` (the page's
                   Generate: the 3D player first, then the video), `generate` (the API's) and `compare`
    rendering.py   the video of a result (one render at a time), and the progress the handlers report
    folders.py     each request's own folder, removed when it fails or has grown old
    animations.py  Generate's 3D animation to the page past Gradio's queue, cancelled if Generate fails
    exports.py     the 3D player's files and the motion's exports (.glb, .bvh, .csv) for the page
    texts.py       what the page says: the introduction, the provenance note, the timing tables and chart
    player.py      the 3D player component; static/ its page script, markup and style (three.js is vendored
                   in assets/vendor/three)

Only player.py imports Gradio, so the handlers are tested directly.
"""
