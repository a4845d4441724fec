// The page's 3D player: the avatar's .glb (skinned SMPL-X body, face shapes as morph targets, one
// animation) played on the speech's clock.
//
// The <audio> element is the master clock: every animation frame poses the body at the motion frame of
// audio.currentTime, so play, pause, seeking and the browser's own audio latency all move the lips with
// the sound. The scene is drawn only when that frame or the view changes (a paused player costs nothing
// and its pixels stay put). The lighting is the video renderer's (asynfusion/render/shaders.py:
// hemisphere ambient, key, fill and rim in world space, no colour management), on its background and
// floor, framed as it frames the body.
//
// mount(THREE, element, props, watch) is called by the gr.HTML component's js_on_load
// (asynfusion/app/player.py) with the vendored three.js bundle. props.value is null or
// {avatar: {url}, speech: {url} or null, fps, frames}; without speech it is the body standing still,
// shown before any result, so that a result only brings an animation: no new mesh, shader or upload
// to wait for. The player's root element exposes its state for tests and scripts: data-state (empty,
// loading, playing, paused, failed) and data-frame (the motion frame on screen: floor(currentTime x
// fps), clamped to the last frame).

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
// The video frames the band from the hands to above the head, seen slightly from above.
const VIEW_BOTTOM = 0.30, VIEW_TOP = 1.08, TILT_DEGREES = 8, FIELD_OF_VIEW = 20;
const FACE_BAND = 0.42;  // metres framed by the close-up, which follows the head
const FACE_ABOVE_HEAD_JOINT = 0.03;  // the head joint sits at the skull's base: the face's middle is above it

function softwareRenderer() {
  const gl = document.createElement("canvas").getContext("webgl2");
  const info = gl && gl.getExtension("WEBGL_debug_renderer_info");
  const name = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
  gl?.getExtension("WEBGL_lose_context")?.loseContext();
  return /swiftshader|llvmpipe|softpipe|software/i.test(name);
}

export function mount(THREE, element, props, watch) {
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

  let renderer;
  try {
    // Multisampling costs a software renderer (no GPU: SwiftShader, llvmpipe) 60 % more per frame
    renderer = new THREE.WebGLRenderer({ canvas, antialias: !softwareRenderer() });
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
  let dirty = true, shownFrame = -1, closeUp = false, loading = 0;
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
      const frame = Math.max(0, Math.min(Math.floor(audio.currentTime * player.fps), player.frames - 1));
      if (frame !== shownFrame) {
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

  function sameBody(gltf) {  // same mesh and face shapes as the body on stage: only the animation is new
    const shape = (model) => {
      let found = null;
      model?.traverse((object) => {
        if (object.isSkinnedMesh && !found) {
          found = [object.geometry.attributes.position.count, Object.keys(object.morphTargetDictionary || {}).join()];
        }
      });
      return JSON.stringify(found);
    };
    return player.model !== null && shape(player.model) === shape(gltf.scene);
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
      // Matte Lambert shading, as the renderer's shader: diffuse light only
      object.material = new THREE.MeshLambertMaterial({ color: source.color, vertexColors: source.vertexColors,
                                                        map: source.map, side: THREE.DoubleSide });
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
    const token = ++loading;
    audio.pause();
    stopAnimation();  // until the new one is in: the old clip must not follow the new speech
    if (!value || !value.avatar) {
      setState("empty", "Press Generate: the avatar plays here in 3D, on the speech's clock.");
      return;
    }
    setState("loading", "Loading the 3D avatar…");
    if (value.speech) {
      audio.muted = false;
      audio.src = value.speech.url;  // fetched while the avatar loads
    } else {
      audio.removeAttribute("src");
    }
    let gltf;
    try {
      gltf = await new THREE.GLTFLoader().loadAsync(value.avatar.url);
    } catch (error) {
      if (token === loading) setState("failed", `The 3D avatar did not load (${error.message || error}).`);
      return;
    }
    if (token !== loading) return;  // a newer result came meanwhile
    if (sameBody(gltf)) {
      disposeModel(gltf.scene);  // never drawn: its buffers never reached the GPU
    } else {
      showBody(gltf.scene);
    }
    animate(gltf.animations[0], value);
    if (!value.speech) {  // the body standing still, before any result: ready, and drawn
      setState("empty", "Press Generate: the avatar plays here in 3D, on the speech's clock.");
      return;
    }
    setState("paused");
    audio.currentTime = 0;
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
    root.dataset.state = "playing";
    for (const media of document.querySelectorAll("audio, video")) {  // one voice at a time on the page
      if (media !== audio && !media.paused) media.pause();
    }
  });
  audio.addEventListener("pause", () => { if (root.dataset.state === "playing") root.dataset.state = "paused"; });
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

  frameFullBody();
  resize();
  requestAnimationFrame(tick);
  watch("value", () => load(props.value));
  load(props.value);
}
