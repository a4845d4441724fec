// Live mode's microphone tap (static/live.js loads it into the page's AudioContext, which runs at 16 kHz,
// so the browser has already resampled the microphone): passes the samples to the page 20 ms at a time,
// a microphone's buffer (the page times each block's arrival and batches them for the server).
class LiveCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(320);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      let offset = 0;
      while (offset < channel.length) {
        const count = Math.min(channel.length - offset, this.block.length - this.filled);
        this.block.set(channel.subarray(offset, offset + count), this.filled);
        this.filled += count;
        offset += count;
        if (this.filled === this.block.length) {
          this.port.postMessage(this.block);
          this.block = new Float32Array(this.block.length);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("af-live-capture", LiveCapture);
