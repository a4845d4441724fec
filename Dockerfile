# The app on a GPU host: docker build -t asynfusion . && docker run --gpus all -p 7860:7860 asynfusion
# Settings are environment variables (asynfusion/settings.py), e.g. -e ASYNFUSION_CACHE_EXAMPLES=lazy.
FROM python:3.11-slim-bookworm

# Offscreen OpenGL through EGL (libglvnd): the NVIDIA driver's EGL when the container is given the GPU's
# "graphics" capability, otherwise Mesa's software rasteriser. ffmpeg comes with the imageio-ffmpeg wheel.
# Distribution packages follow the pinned base image rather than pinned versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libegl1 libgl1 libgles2 libopengl0 libgl1-mesa-dri \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /usr/share/glvnd/egl_vendor.d \
    && printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "libEGL_nvidia.so.0"}}\n' \
        > /usr/share/glvnd/egl_vendor.d/10_nvidia.json

ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    PYOPENGL_PLATFORM=egl \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860

RUN useradd --create-home --uid 1000 user
USER 1000:1000
ENV PATH=/home/user/.local/bin:$PATH
WORKDIR /home/user/app

COPY --chown=1000:1000 requirements.txt .
RUN pip install --no-cache-dir --user -r requirements.txt

COPY --chown=1000:1000 app.py ./
COPY --chown=1000:1000 asynfusion asynfusion
COPY --chown=1000:1000 assets assets
COPY --chown=1000:1000 checkpoints checkpoints

EXPOSE 7860
CMD ["python", "app.py"]
