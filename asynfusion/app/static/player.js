// The page's 3D player: the avatar (skinned SMPL-X body, face shapes as morph targets, the video's outfit)
// played on the speech's clock.
//
// The <audio> element is the master clock: every animation frame poses the body at the motion frame of
// audio.currentTime, so play, pause, seeking and the browser's own audio latency all move the lips with
// the sound. The scene is drawn only when that frame or the view changes (a paused player costs nothing
// and its pixels stay put). The look is the video renderer's: its outfit and vertex colours (the .glb's
// materials and COLOR_0, asynfusion/render/outfit.py), its lighting (asynfusion/render/shaders.py:
// hemisphere ambient, key, fill and rim in world space, a specular glint, no colour management), on its
// background and floor, framed as it frames the body.
//
// mount(THREE, element, props, watch, appRoot) is called by the gr.HTML component's js_on_load
// (asynfusion/app/player.py) with the vendored three.js bundle and the app's root URL. props.value is null
// or {body: {url}, speech: {url} or null, fps, frames, animation: {url} or null, stream: path or null}.
// The body is a .glb, the same file for every result: it is loaded once, when the page opens, and kept.
// Without speech it stands in the .glb's own pose. Generate first sends the speech alone, which the
// player fetches while the motion is made, with the stream it asks for the result's animation at once
// (asynfusion/app/animations.py: the request is answered as soon as the motion is made; the animation is
// export/animation.py's, no mesh, shader or upload to wait for), and plays both. Generate's later steps
// carry the same stream: the result on the player stays as it is. Without a stream, or when it fails,
// the animation comes as a Gradio file in the value; when the stream answers NOT_MADE (Generate failed
// after its first result, and no later result will come) the player stops waiting and says why, while
// Gradio shows the error. The player's root element exposes its state for
// tests and scripts: data-state (empty, loading, playing, paused, live, failed) and data-frame (the motion
// frame on screen: floor(currentTime x fps), less the sound's output latency while it plays through an
// AudioContext, clamped to the last frame).

// The renderer's colours (asynfusion/render/scene.py) and lights (shaders.py): direction, strength.
const BACKGROUND = [0.93, 0.93, 0.92];
const FLOOR = [0.78, 0.77, 0.75];
const FLOOR_SIZE = [40, 8], FLOOR_CENTRE_Z = -2;  // the renderer's floor runs from 2 m in front to 6 m behind
const HEMISPHERE = { sky: 0.62, ground: 0.42 };
const LIGHTS = [
  { direction: [-0.45, 0.65, 0.75], strength: 0.55 },  // key
  { direction: [0.6, 0.2, 0.7], strength: 0.22 },      // fill
  { direction: [0.0, 0.3, -1.0], strength: 0.18 },     // rim
];
// The key light's glint: (n . h)^24 x 0.06, h halfway between the key and the video camera's view (+z)
const SPECULAR = `
  vec3 worldNormal = normalize((vec4(normal, 0.0) * viewMatrix).xyz);  // view space -> world
  vec3 halfVector = normalize(normalize(vec3(${LIGHTS[0].direction.join(", ")})) + vec3(0.0, 0.0, 1.0));
  outgoingLight += pow(max(dot(worldNormal, halfVector), 0.0), 24.0) * 0.06;
`;
// The video frames the band from the hands to above the head, seen slightly from above.
const VIEW_BOTTOM = 0.30, VIEW_TOP = 1.08, TILT_DEGREES = 8, FIELD_OF_VIEW = 20;
const FACE_BAND = 0.42;  // metres framed by the close-up, which follows the head
const FACE_ABOVE_HEAD_JOINT = 0.03;  // the head joint sits at the skull's base: the face's middle is above it
const NOT_MADE = 500;  // the stream's answer when Generate failed or stopped first (animations.NOT_MADE_STATUS)

function softwareRenderer() {
  const gl = document.createElement("canvas").getContext("webgl2");
  const info = gl && gl.getExtension("WEBGL_debug_renderer_info");
  const name = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
  gl?.getExtension("WEBGL_lose_context")?.loseContext();
  return /swiftshader|llvmpipe|softpipe|software/i.test(name);
}

// The speech's way out. Chromium opens an <audio> element's own output when it starts playing: its clock
// then stands ~0.1 s before it runs (headless, here: frame 1 came 0.15-0.17 s after play(); through an
// open AudioContext 0.05 s). Once the page may sound (the visitor has clicked), the element is played
// through an AudioContext, opened while the motion is made, so the sound, and the body with it, starts at
// once. Its clock then runs ahead of what is heard by the context's latency, which the player takes off.
// The context rests after a while paused (no audio thread running for nothing) and opens again on play.
function speechOutput(audio) {
  let context = null, routed = false, resting = null;
  return {
    open() {  // before a result plays: its sound goes out through the context once that runs
      clearTimeout(resting);
      if (!window.AudioContext) return;
      context ??= new AudioContext();
      context.resume().then(() => {
        // without a click on the page first the context stays suspended, and the element plays on its own;
        // one already playing is left to its own output too (switching would jolt its clock)
        if (routed || context.state !== "running" || !audio.paused) return;
        context.createMediaElementSource(audio).connect(context.destination);
        routed = true;
      }).catch(() => {});
    },
    wake() {  // the speech plays: a resting context opens again
      clearTimeout(resting);
      if (routed) context.resume().catch(() => {});
    },
    rest(still) {
      clearTimeout(resting);
      resting = setTimeout(() => { if (routed && still()) context.suspend().catch(() => {}); }, 10_000);
    },
    latency() {  // seconds from the element's clock to the sound heard
      return routed ? (context.baseLatency || 0) + (context.outputLatency || 0) : 0;
    },
  };
}

export function mount(THREE, element, props, watch, appRoot = document.baseURI) {
  const root = element.querySelector(".af-player");
  const canvas = root.querySelector("canvas");
  const audio = root.querySelector("audio");
  const message = root.querySelector(".af-message");
  const faceButton = root.querySelector(".af-face");
  const resetButton = root.querySelector(".af-reset");
  const setState = (state, text = "") => {
    root.dataset.state = state;
    message.textContent = text;
  };
  const sound = speechOutput(audio);

  let renderer;
  const software = softwareRenderer();
  try {
    // Multisampling costs a software renderer (no GPU: SwiftShader, llvmpipe) 60 % more per frame
    renderer = new THREE.WebGLRenderer({ canvas, antialias: !software });
  } catch (error) {
    setState("failed", "The 3D view needs WebGL, which this browser does not offer: the video follows below.");
    return;
  }
  // The renderer's shader lights sRGB colours as they are, with no conversion to linear and back.
  THREE.ColorManagement.enabled = false;
  renderer.outputColorSpace = THREE.LinearSRGBColorSpace;
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));

  const scene = new THREE.Scene();
  scene.background = new THREE.Color(...BACKGROUND);
  // three divides diffuse light by pi (physical units); the renderer's shader does not.
  scene.add(new THREE.HemisphereLight(new THREE.Color().setScalar(HEMISPHERE.sky),
                                      new THREE.Color().setScalar(HEMISPHERE.ground), Math.PI));
  for (const { direction, strength } of LIGHTS) {
    const light = new THREE.DirectionalLight(0xffffff, strength * Math.PI);
    light.position.set(...direction);
    scene.add(light);
  }
  const floor = new THREE.Mesh(new THREE.PlaneGeometry(FLOOR_SIZE[0], FLOOR_SIZE[1]),
                               new THREE.MeshBasicMaterial({ color: new THREE.Color(...FLOOR) }));
  floor.rotation.x = -Math.PI / 2;
  floor.position.z = FLOOR_CENTRE_Z;
  scene.add(floor);

  const camera = new THREE.PerspectiveCamera(FIELD_OF_VIEW, 1, 0.02, 100);
  const controls = new THREE.OrbitControls(camera, canvas);
  controls.addEventListener("change", () => { dirty = true; });

  const player = { model: null, mixer: null, action: null, head: null, height: 1.7, fps: 30, frames: 0 };
  let body = null;  // {url, gltf: a promise of it}: the body's .glb, loaded once
  let dirty = true, shownFrame = -1, closeUp = false, loading = 0;
  let streamed = null;  // the stream of the result on the player, or on its way (Generate's)
  const headPosition = new THREE.Vector3();

  function frameFullBody() {
    const height = player.height;
    const target = new THREE.Vector3(0, (VIEW_TOP + VIEW_BOTTOM) / 2 * height, 0);
    const distance = ((VIEW_TOP - VIEW_BOTTOM) * height / 2) / Math.tan(THREE.MathUtils.degToRad(FIELD_OF_VIEW / 2));
    lookFrom(target, distance, new THREE.Vector3(0, Math.sin(THREE.MathUtils.degToRad(TILT_DEGREES)),
                                                 Math.cos(THREE.MathUtils.degToRad(TILT_DEGREES))));
  }

  function frameFace() {
    if (!headAt(headPosition)) return;
    const distance = (FACE_BAND / 2) / Math.tan(THREE.MathUtils.degToRad(FIELD_OF_VIEW / 2));
    lookFrom(headPosition, distance, new THREE.Vector3(0, 0.05, 1));
  }

  function lookFrom(target, distance, direction) {
    controls.target.copy(target);
    camera.position.copy(target).addScaledVector(direction.normalize(), distance);
    controls.update();
    dirty = true;
  }

  function headAt(position) {
    if (!player.head) return false;
    player.head.getWorldPosition(position);
    position.y += FACE_ABOVE_HEAD_JOINT;
    return true;
  }

  function followHead() {  // the close-up keeps the orbit's angle and distance, centred on the moving head
    const target = controls.target;
    if (!headAt(headPosition) || headPosition.distanceToSquared(target) < 1e-10) return;
    camera.position.add(headPosition).sub(target);
    target.copy(headPosition);
    controls.update();
  }

  function resize() {
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (!width || !height) return;
    renderer.setSize(width, height, false);
    camera.aspect = width / height;
    camera.updateProjectionMatrix();
    dirty = true;
  }
  new ResizeObserver(resize).observe(canvas);

  function tick() {
    requestAnimationFrame(tick);
    if (player.action) {
      // The audio clock picks the motion's frame, and the body takes that frame's pose exactly: 30 poses
      // a second, as in the video, however often the screen refreshes (a software renderer draws a frame
      // in ~0.1 s). The action's time is set directly rather than advanced by mixer.update(delta) or
      // mixer.setTime(t): those loop (or, with LoopOnce, stop the action) at the clip's end, while the
      // clock may stand past the last keyframe or seek back from there.
      // While a new result's sound is on its first frame, the pose on screen stands for it: a software
      // renderer takes ~0.1 s to draw a frame, and drawing frame 0 would hold back the first moving one.
      const heard = audio.currentTime - (audio.paused ? 0 : sound.latency());  // what is sounding now
      const frame = Math.max(0, Math.min(Math.floor(heard * player.fps), player.frames - 1));
      if (frame !== shownFrame && !(shownFrame < 0 && frame === 0 && !audio.paused)) {
        player.action.time = Math.min(frame / player.fps, player.action.getClip().duration);
        player.mixer.update(0);
        shownFrame = frame;
        root.dataset.frame = String(frame);
        if (closeUp) followHead();
        dirty = true;
      }
    }
    if (dirty) {
      dirty = false;
      renderer.render(scene, camera);
    }
  }

  function bodyFile(url) {  // the body's glTF: loaded once per body file, whatever the results
    if (body?.url !== url) {
      const loaded = { url, gltf: new THREE.GLTFLoader().loadAsync(url) };
      loaded.gltf.catch(() => { if (body === loaded) body = null; });  // a later result tries again
      body = loaded;
    }
    return body.gltf;
  }

  async function animationFile(url) {  // asynfusion/export/animation.py's layout
    const response = await fetch(url);
    if (!response.ok) {
      const error = new Error(`HTTP ${response.status} for the animation`);
      error.status = response.status;
      error.reason = (await response.text().catch(() => "")).split("\n")[0];  // the route's one line
      throw error;
    }
    const buffer = await response.arrayBuffer();
    const length = new DataView(buffer).getUint32(0, true);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
    return { header, buffer, offset: 4 + length };
  }

  function clip({ header, buffer, offset }) {  // the animation as the .glb's own would be, on the body shown
    const { frames, fps, joints, targets } = header;
    const take = (count) => {
      const values = new Float32Array(buffer, offset, count);
      offset += 4 * count;
      return values;
    };
    const times = Float32Array.from({ length: frames }, (_, frame) => frame / fps);
    const tracks = joints.map((joint) => new THREE.QuaternionKeyframeTrack(`${joint}.quaternion`, times,
                                                                           take(frames * 4)));
    tracks.push(new THREE.VectorKeyframeTrack(`${joints[0]}.position`, times, take(frames * 3)));
    if (targets) {
      const weights = take(frames * targets);
      player.model.traverse((object) => {  // every region of the body has the face shapes
        if (object.morphTargetInfluences) {
          tracks.push(new THREE.NumberKeyframeTrack(`${object.uuid}.morphTargetInfluences`, times, weights));
        }
      });
    }
    return new THREE.AnimationClip("motion", -1, tracks);
  }

  function showBody(model) {
    if (player.model) {
      scene.remove(player.model);
      disposeModel(player.model);
    }
    let bounds = null;
    model.traverse((object) => {
      if (!object.isMesh) return;
      const source = object.material;
      // Matte Lambert shading and the key's glint, as the renderer's shader, on the colours the video
      // shows: glTF's are linear, the renderer lights sRGB values as they are.
      object.material = new THREE.MeshLambertMaterial({ color: source.color.clone().convertLinearToSRGB(),
                                                        vertexColors: source.vertexColors, side: THREE.DoubleSide });
      object.material.onBeforeCompile = addSpecular;
      if (source.vertexColors) srgbVertexColors(object.geometry);
      source.dispose();
      object.frustumCulled = false;  // the rest pose's bounds do not follow the animated body
      // the rest mesh itself (geometry.computeBoundingBox would also widen it by every face shape)
      const rest = new THREE.Box3().setFromBufferAttribute(object.geometry.attributes.position);
      bounds = bounds ? bounds.union(rest) : rest;
    });
    // glTF keeps SMPL-X's origin (the rest feet below y = 0): stand the rest pose on the floor
    model.position.y = bounds ? -bounds.min.y : 0;
    player.height = bounds ? bounds.max.y - bounds.min.y : 1.7;
    scene.add(model);
    player.model = model;
    player.head = model.getObjectByName("head") || null;
    player.mixer = new THREE.AnimationMixer(model);
    player.action = null;
    faceButton.disabled = !player.head;
    closeUp ? frameFace() : frameFullBody();
  }

  function addSpecular(shader) {
    shader.fragmentShader = shader.fragmentShader.replace("#include <opaque_fragment>",
                                                          SPECULAR + "#include <opaque_fragment>");
  }

  function srgbVertexColors(geometry) {
    const linear = geometry.attributes.color, color = new THREE.Color();
    const srgb = new Float32Array(linear.count * 3);
    for (let i = 0; i < linear.count; i++) {
      color.setRGB(linear.getX(i), linear.getY(i), linear.getZ(i)).convertLinearToSRGB().toArray(srgb, 3 * i);
    }
    geometry.setAttribute("color", new THREE.BufferAttribute(srgb, 3));
  }

  function disposeModel(model) {
    model.traverse((object) => {
      object.geometry?.dispose();
      object.material?.dispose();
    });
  }

  function stopAnimation() {  // the body keeps its last pose
    if (!player.action) return;
    player.action.stop();
    player.mixer.uncacheClip(player.action.getClip());
    player.action = null;
  }

  function animate(clip, value) {
    player.fps = value.fps || 30;
    player.frames = value.frames || Math.round(clip.duration * player.fps) + 1;
    player.action = player.mixer.clipAction(clip);
    player.action.play();
    shownFrame = -1;
  }

  async function load(value) {
    if (value?.stream && value.stream === streamed) return;  // a later step of the result on the player
    const token = ++loading;
    streamed = null;
    audio.pause();
    stopAnimation();  // until the new one is in: the old clip must not follow the new speech
    if (!value || !value.body) {
      setState("empty", "Press Generate: the avatar plays here in 3D, on the speech's clock.");
      return;
    }
    if (value.speech) {
      audio.muted = false;
      const url = new URL(value.speech.url, document.baseURI).href;
      if (audio.src !== url) audio.src = url;  // fetched now; already in when it came before the animation
    } else {
      audio.removeAttribute("src");
    }
    let animation = value.animation ? animationFile(value.animation.url) : null;  // alongside the body
    if (value.speech && !value.animation) {  // the motion is being made: the body waits in its pose
      bodyFile(value.body.url).catch(() => {});  // (the body on stage already, unless it is a new one)
      setState("loading", "Making the motion…");
      if (!value.stream) return;
      sound.open();  // while the motion is made
      streamed = value.stream;
      animation = animationFile(new URL(value.stream, appRoot).href);
      try {
        await animation;
      } catch (error) {  // the result's next step brings the animation as a file, unless Generate failed
        if (token !== loading) return;
        streamed = null;
        if (props.value?.stream === value.stream && props.value.animation) {
          load(props.value);
        } else if (error.status === NOT_MADE) {  // no next step: the body stays in its pose, the speech can play
          const line = error.reason || "the motion was not made";
          sound.rest(() => audio.paused);
          setState("failed", line[0].toUpperCase() + line.slice(1).replace(/\.?$/, "."));
        }
        return;
      }
      if (token !== loading) return;
    }
    setState("loading", "Loading the 3D avatar…");
    root.dataset.frame = "0";  // the new result's frames count from its start
    let motion;
    try {
      const gltf = bodyFile(value.body.url);
      animation?.catch(() => {});  // reported below, once the body is in
      const model = (await gltf).scene;
      if (token !== loading) return;  // a newer result came meanwhile
      if (player.model !== model) showBody(model);
      motion = animation ? clip(await animation) : (await gltf).animations[0];
    } catch (error) {
      if (token === loading) setState("failed", `The 3D avatar did not load (${error.message || error}).`);
      return;
    }
    if (token !== loading) return;
    animate(motion, value);
    if (!value.speech) {  // the body standing still, before any result: ready, and drawn
      setState("empty", "Press Generate: the avatar plays here in 3D, on the speech's clock.");
      return;
    }
    setState("paused");
    if (audio.currentTime) audio.currentTime = 0;  // a new speech starts at 0: no seek to wait for
    try {
      await audio.play();
    } catch (error) {
      // NotAllowedError: the browser allows sound only after a click on the page, so start muted and
      // say how to unmute. (An AbortError means the visitor paused first: the player stays paused.)
      if (error.name !== "NotAllowedError" || token !== loading) return;
      audio.muted = true;
      await audio.play().catch(() => {});
      message.textContent = "Muted until you click the player's sound button.";
    }
  }

  audio.addEventListener("play", () => {
    sound.wake();
    root.dataset.state = "playing";
    for (const media of document.querySelectorAll("audio, video")) {  // one voice at a time on the page
      if (media !== audio && !media.paused) media.pause();
    }
  });
  audio.addEventListener("pause", () => {
    if (root.dataset.state === "playing") root.dataset.state = "paused";
    sound.rest(() => audio.paused && root.dataset.state !== "loading");
  });
  audio.addEventListener("volumechange", () => { if (!audio.muted) message.textContent = ""; });
  document.addEventListener("play", (event) => {  // another player on the page started: this one stops
    if (event.target !== audio && !event.target.muted) audio.pause();
  }, true);
  faceButton.addEventListener("click", () => {
    closeUp = !closeUp;
    faceButton.setAttribute("aria-pressed", String(closeUp));
    closeUp ? frameFace() : frameFullBody();
  });
  resetButton.addEventListener("click", () => {
    closeUp = false;
    faceButton.setAttribute("aria-pressed", "false");
    frameFullBody();
  });

  // Live mode (static/live.js) poses the body itself as its motion arrives: begin() hands the body over
  // (the speech and any result stop; one still loading is dropped), drew(frame) says a frame is posed.
  root.live = {
    software,  // each frame drawn costs the CPU that makes the motion: live draws fewer
    begin() {
      loading++;
      streamed = null;
      audio.pause();
      audio.removeAttribute("src");
      stopAnimation();
      setState("live");
      return player.model;
    },
    drew(frame) {
      root.dataset.frame = String(frame);
      if (closeUp) followHead();
      dirty = true;
    },
  };

  frameFullBody();
  resize();
  requestAnimationFrame(tick);
  watch("value", () => load(props.value));
  load(props.value);
}
