// Live mode in the page: the microphone's speech goes to the server as it is heard, the motion made from
// it comes back a chunk at a time, and the 3D player (static/player.js) poses the avatar with it, a steady
// fraction of a second behind the voice. Stop, and the take comes back as a result, as after Generate.
//
// The transport is asynfusion/app/live_route.py's: POST live/start, then a streamed GET of the motion
// (length-prefixed messages, each an animation in asynfusion/export/animation.py's layout for the frames
// it carries, from frame `first`), 16 kHz 16-bit PCM POSTed 100 ms or more at a time (one request at a
// time, in order: what came meanwhile goes in the next), and POST live/{take}/stop.
//
// Latency, measured here: a frame's latency is the time its message arrived in the page, less the time
// the audio at that frame's instant arrived from the microphone (an AudioWorklet, static/live-capture.js,
// hands it over 20 ms at a time, as asynfusion/live.py's stream_file feeds a file). A chunk's frames arrive together, the oldest a chunk behind the newest,
// so the page shows each frame at a fixed delay after its audio (the largest latency of the last few
// chunks, plus a frame): the mouth stays that far behind the voice, and the motion plays at 30 frames a
// second without stalls. The panel shows p50 and p95 of the latency and that delay, and keeps them in its
// root's data-* attributes for tests: data-state (idle, starting, live, stopping, failed), data-frames
// (frames received), data-shown (the frame on screen), data-latency-p50, data-latency-p95, data-delay.
//
// mount(element, props, urls) is called by the Live panel's js_on_load (asynfusion/app/live_panel.py); on a
// saved take it sets props.value to {take, latency_p50_s, latency_p95_s, mouth_delay_s}, which fires the
// panel's change event, for the app to send the take to the player, the downloads and the video.

const SAMPLE_RATE = 16000;
const RECENT_CHUNKS = 6;  // the playout delay follows the largest latency of this many latest chunks
// 100 ms a request: at 40 ms (25 requests a second) the page's latency p50 was 1.95 s against 0.87 s at
// 100 ms (the same busy machine, minutes apart): the requests cost the server's Python more than they save
const SEND_SAMPLES = 1600;
// A software renderer (no GPU) draws a frame with the CPU, ~0.1 s a frame: at 30 a second in a browser on
// the server's own two cores, the page's latency p50 went from 0.87 s to 4.5 s. There the page draws
// SOFTWARE_DRAWS a second, each the newest frame due.
const SOFTWARE_DRAWS = 5;

function percentile(values, q) {
  if (!values.length) return null;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1) + 0.5))];
}

function toPcm16(samples) {
  const pcm = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) pcm[i] = Math.max(-1, Math.min(1, samples[i])) * 32767;
  return pcm;
}

function* messages(buffer) {  // whole messages at the front of `buffer`: [header, floats, bytes used]
  let offset = 0;
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  while (offset + 4 <= buffer.length) {
    const length = view.getUint32(offset, true);
    if (offset + 4 + length > buffer.length) break;
    const headerLength = view.getUint32(offset + 4, true);
    const start = offset + 8;
    const header = JSON.parse(new TextDecoder().decode(buffer.subarray(start, start + headerLength)));
    const data = buffer.slice(start + headerLength, offset + 4 + length);  // a copy: aligned for Float32Array
    offset += 4 + length;
    yield [header, new Float32Array(data.buffer, 0, data.byteLength / 4), offset];
  }
}

export function mount(element, props, urls) {
  const panel = element.querySelector(".af-live");
  const button = panel.querySelector(".af-live-button");
  const status = panel.querySelector(".af-live-status");
  const figures = panel.querySelector(".af-live-latency");
  let take = null;  // the take on now

  const say = (state, text) => {
    panel.dataset.state = state;
    if (text !== undefined) status.textContent = text;
    button.setAttribute("aria-pressed", String(state === "live" || state === "starting"));
    button.textContent = state === "live" || state === "starting" ? "■ Stop" : "● Live";
    button.disabled = state === "stopping";
  };

  button.addEventListener("click", () => (take ? take.stop() : begin()));

  async function begin() {
    take = new Take();
    try {
      await take.start();
    } catch (error) {
      take?.close();
      take = null;
      say("failed", error.message);
    }
  }

  class Take {
    constructor() {
      this.heard = [];          // [samples received so far, time they arrived], a row per 20 ms block
      this.received = 0;
      this.pending = [];        // PCM blocks not yet sent
      this.unsent = 0;          // their samples
      this.sending = false;
      this.seq = 0;
      this.queue = [];          // frames received, not yet shown: {frame, message, index}
      this.latencies = [];      // every frame's latency, seconds
      this.recent = [];         // the largest latency of each latest chunk
      this.frames = 0;
      this.drawn = 0;           // when the page last drew a frame, seconds
      this.closed = false;
      this.player = document.querySelector(".af-player");
      this.connection = new AbortController();  // closes the motion stream: the server then drops the take
    }

    async start() {
      say("starting", "Asking for the microphone…");
      try {
        this.stream = await navigator.mediaDevices.getUserMedia({
          audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: true },
        });
      } catch (error) {
        throw new Error(error.name === "NotAllowedError" || error.name === "SecurityError"
          ? "The microphone is blocked: allow it for this page in the browser, then press Live again."
          : `No microphone to listen to (${error.name}): plug one in, then press Live again.`);
      }
      const response = await fetch(new URL("live/start", urls.root), { method: "POST" });
      const answer = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
      if (!response.ok) throw new Error(answer.error);
      this.id = answer.take;
      this.fps = answer.fps;
      this.maxSeconds = answer.max_seconds;
      this.listen();  // the motion stream, before any audio
      this.context = new AudioContext({ sampleRate: SAMPLE_RATE });
      await this.context.audioWorklet.addModule(urls.worklet);
      const source = this.context.createMediaStreamSource(this.stream);
      this.tap = new AudioWorkletNode(this.context, "af-live-capture");
      const mute = new GainNode(this.context, { gain: 0 });  // pulled by the output, heard by nobody
      source.connect(this.tap).connect(mute).connect(this.context.destination);
      this.tap.port.onmessage = (event) => this.hear(event.data);
      this.body = this.player?.live?.begin() || null;  // the player hands its body over
      this.pose = this.body ? posing(this.body) : null;
      say("live", "Listening: talk, and the avatar moves with you. Press Stop to keep the take.");
      requestAnimationFrame(() => this.show());
    }

    hear(samples) {
      if (this.closed) return;
      this.received += samples.length;
      this.heard.push([this.received, performance.now() / 1000]);
      this.pending.push(toPcm16(samples));
      this.unsent += samples.length;
      this.send();
    }

    async send(all = false) {  // one request at a time, in order: whatever came meanwhile goes in the next
      if (this.sending || !this.unsent || (this.unsent < SEND_SAMPLES && !all) || this.closed) return;
      this.sending = true;
      const blocks = this.pending.splice(0);
      this.unsent = 0;
      const body = new Int16Array(blocks.reduce((n, block) => n + block.length, 0));
      blocks.reduce((offset, block) => (body.set(block, offset), offset + block.length), 0);
      try {
        const url = new URL(`live/${this.id}/audio?seq=${this.seq++}`, urls.root);
        const response = await fetch(url, { method: "POST", body, headers: { "Content-Type": "audio/L16" } });
        if (!response.ok && response.status !== 409) throw new Error(`the server answered ${response.status}`);
      } catch (error) {
        this.fail(`The connection to the server dropped (${error.message}): the take is lost.`);
      }
      this.sending = false;
      this.send(all);
    }

    heardAt(sample) {  // when the block holding audio sample `sample` arrived
      let low = 0, high = this.heard.length - 1;
      while (low < high) {
        const middle = (low + high) >> 1;
        if (this.heard[middle][0] > sample) high = middle; else low = middle + 1;
      }
      return this.heard[low]?.[1] ?? performance.now() / 1000;
    }

    async listen() {
      let buffer = new Uint8Array(0);
      try {
        const response = await fetch(new URL(`live/${this.id}/motion`, urls.root),
                                     { cache: "no-store", signal: this.connection.signal });
        if (!response.ok) throw new Error(`the server answered ${response.status}`);
        const reader = response.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          const joined = new Uint8Array(buffer.length + value.length);
          joined.set(buffer);
          joined.set(value, buffer.length);
          let used = 0;
          for (const [header, floats, end] of messages(joined)) {
            used = end;
            this.message(header, floats);
          }
          buffer = joined.slice(used);
        }
      } catch (error) {
        if (!this.closed) this.fail(`The connection to the server dropped (${error.message}): the take is lost.`);
        return;
      }
      if (!this.closed) this.fail("The server ended the take without a word: press Live to try again.");
    }

    message(header, floats) {
      if (header.type === "frames") {
        const now = performance.now() / 1000;
        let oldest = 0;
        for (let index = 0; index < header.frames; index++) {
          const frame = header.first + index;
          const latency = now - this.heardAt(Math.round(frame * SAMPLE_RATE / this.fps));
          this.latencies.push(latency);
          oldest = Math.max(oldest, latency);
          this.queue.push({ frame, header, floats, index });
        }
        this.recent = [...this.recent.slice(1 - RECENT_CHUNKS), oldest];
        this.frames = header.first + header.frames;
        panel.dataset.frames = String(this.frames);
        this.showFigures();
      } else if (header.type === "end") {
        this.end(header);
      } else {
        this.fail(header.message);
      }
    }

    delay() {  // seconds from a frame's audio to the frame on screen
      return Math.max(...this.recent) + 1 / this.fps;
    }

    showFigures() {
      const p50 = percentile(this.latencies, 0.5), p95 = percentile(this.latencies, 0.95);
      Object.assign(panel.dataset, { latencyP50: p50.toFixed(3), latencyP95: p95.toFixed(3),
                                     delay: this.delay().toFixed(3) });
      figures.textContent = `latency p50 ${p50.toFixed(2)} s · p95 ${p95.toFixed(2)} s · mouth ` +
                            `${this.delay().toFixed(2)} s behind your voice`;
    }

    show() {  // every screen refresh (a software renderer's: SOFTWARE_DRAWS a second): the newest frame due
      if (this.closed && !this.queue.length) return;
      requestAnimationFrame(() => this.show());
      const now = performance.now() / 1000, delay = this.queue.length ? this.delay() : 0;
      if (this.player?.live?.software && now - this.drawn < 1 / SOFTWARE_DRAWS) return;
      let due = null;
      while (this.queue.length && this.heardAt(Math.round(this.queue[0].frame * SAMPLE_RATE / this.fps)) +
             delay <= now) {
        due = this.queue.shift();
      }
      if (!due) return;
      if (this.pose) {
        this.pose(due);
        this.player.live.drew(due.frame);
      }
      this.drawn = now;
      panel.dataset.shown = String(due.frame);
    }

    stop() {
      if (this.closed || !this.id) return;
      say("stopping", "Making the last frames and saving the take…");
      this.quiet();
      const flush = async () => {
        while (this.sending) await new Promise((done) => setTimeout(done, 20));
        await this.send(true);
        await fetch(new URL(`live/${this.id}/stop`, urls.root), { method: "POST" }).catch(() => {});
      };
      flush();
    }

    quiet() {  // the microphone off, the audio graph gone
      this.stream?.getTracks().forEach((track) => track.stop());
      this.context?.close().catch(() => {});
      this.stream = this.context = null;
    }

    end(result) {
      this.quiet();
      this.close();
      const capped = result.ending === "cap" ? `Live stops at ${Math.round(this.maxSeconds / 60)} minutes. ` : "";
      say("idle", `${capped}Take saved: ${result.seconds.toFixed(1)} s. It replays in the player; the downloads ` +
                  "and the video follow.");
      // a new value fires the panel's change event (Gradio's gr.HTML): app.py shows the take
      props.value = { take: result.take, latency_p50_s: percentile(this.latencies, 0.5),
                      latency_p95_s: percentile(this.latencies, 0.95), mouth_delay_s: this.delay() };
    }

    fail(text) {
      if (this.closed) return;
      this.quiet();
      this.close();
      say("failed", text);
    }

    close() {
      this.closed = true;
      this.connection.abort();
      take = null;
    }
  }
}

// The body's pose at one received frame, set directly on its joints and face shapes (the values the .glb's
// animation would key at that frame): joint rotations (joints, frames, 4), the root's translation
// (frames, 3), face-shape weights (frames, targets).
function posing(model) {
  const joints = new Map(), faces = [];
  model.traverse((object) => {
    if (object.morphTargetInfluences) faces.push(object);
  });
  return ({ header, floats, index }) => {
    const { frames, targets } = header;
    header.joints.forEach((name, joint) => {
      if (!joints.has(name)) joints.set(name, model.getObjectByName(name));
      joints.get(name)?.quaternion.fromArray(floats, (joint * frames + index) * 4);
    });
    const root = header.joints.length * frames * 4;
    joints.get(header.joints[0])?.position.fromArray(floats, root + index * 3);
    if (targets) {
      const weights = root + frames * 3 + index * targets;
      for (const face of faces) {
        for (let k = 0; k < Math.min(targets, face.morphTargetInfluences.length); k++) {
          face.morphTargetInfluences[k] = floats[weights + k];
        }
      }
    }
  };
}
