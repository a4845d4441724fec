"""The GLSL programs every mesh of the scene is drawn with (pyrender loads them from files: see
`scene._Stage._write_shaders`, which also fills in the close-up card's size in pixels)."""

from .outfit import shader_rule

# Clothes (outfit.py): each body vertex carries its signed distances to the outfit's cuts in the
# texture-coordinate slots, and the fragment shader picks the cloth per pixel, so the seams are
# straight lines rather than the vertex staircase per-vertex colours would give.

# Lighting lives in the shader: a soft studio rig (hemisphere ambient, key, fill, rim) in world
# space. pyrender's own PBR shader costs 5x more per pixel on a software rasteriser (llvmpipe).
VERTEX_SHADER = """#version 330 core
layout(location = 0) in vec3 position;
#ifdef NORMAL_LOC
layout(location = NORMAL_LOC) in vec3 normal;
#endif
#ifdef TEXCOORD_0_LOC
layout(location = TEXCOORD_0_LOC) in vec2 texcoord_0;
#endif
#ifdef TEXCOORD_1_LOC
layout(location = TEXCOORD_1_LOC) in vec2 texcoord_1;
#endif
#ifdef COLOR_0_LOC
layout(location = COLOR_0_LOC) in vec4 color_0;
#endif
layout(location = INST_M_LOC) in mat4 inst_m;
uniform mat4 M;
uniform mat4 V;
uniform mat4 P;
out vec3 frag_normal;
out vec4 frag_color;
#ifdef TEXCOORD_1_LOC
out vec4 cuts;
#else
#ifdef TEXCOORD_0_LOC
flat out vec2 clip;
#endif
#endif
void main() {
#ifdef TEXCOORD_1_LOC
    cuts = vec4(texcoord_0, texcoord_1);  // a body: its outfit cuts
#else
#ifdef TEXCOORD_0_LOC
    clip = texcoord_0;  // a close-up head: the lower-left pixel of its card
#endif
#endif
    // matrix-vector products only: llvmpipe runs the vertex shader on one thread, and P * V * M * inst_m
    // as written costs three 4x4 matrix products per vertex
    gl_Position = P * (V * (M * (inst_m * vec4(position, 1.0))));
#ifdef NORMAL_LOC
    frag_normal = mat3(M) * (mat3(inst_m) * normal);
#else
    frag_normal = vec3(0.0, 1.0, 0.0);
#endif
#ifdef COLOR_0_LOC
    frag_color = color_0;
#else
    frag_color = vec4(1.0);
#endif
}
"""
FRAGMENT_SHADER = """#version 330 core
struct Material { vec4 base_color_factor; vec3 emissive_factor; };
uniform Material material;
in vec3 frag_normal;
in vec4 frag_color;
#ifdef TEXCOORD_1_LOC
in vec4 cuts;  // signed distances: below the neckline, above the waist, inside the sleeves, above the shoes
#else
#ifdef TEXCOORD_0_LOC
flat in vec2 clip;
#endif
#endif
out vec4 color;
void main() {
#ifndef TEXCOORD_1_LOC
#ifdef TEXCOORD_0_LOC
    // only the close-up head's program can discard: a shader that may discard cannot depth-test early
    if (any(lessThan(gl_FragCoord.xy, clip)) || any(greaterThan(gl_FragCoord.xy, clip + vec2(CARD_PIXELS)))) discard;
#endif
#endif
    vec3 n = normalize(frag_normal);
    if (!gl_FrontFacing) n = -n;
    vec3 albedo = frag_color.rgb * material.base_color_factor.rgb;
#ifdef TEXCOORD_1_LOC
    OUTFIT_RULE
#endif
    float hemisphere = mix(0.42, 0.62, 0.5 + 0.5 * n.y);
    float key = max(dot(n, normalize(vec3(-0.45, 0.65, 0.75))), 0.0) * 0.55;
    float fill = max(dot(n, normalize(vec3(0.6, 0.2, 0.7))), 0.0) * 0.22;
    float rim = max(dot(n, normalize(vec3(0.0, 0.3, -1.0))), 0.0);
    rim = rim * rim * 0.18;
    vec3 half_vector = normalize(normalize(vec3(-0.45, 0.65, 0.75)) + vec3(0.0, 0.0, 1.0));
    // x^24 by multiplications: llvmpipe's pow (exp2 of log2) made this shader 1.3x as costly (1 pixel
    // of a frame moved by one level)
    float s = max(dot(n, half_vector), 0.0);
    s *= s;
    s *= s;
    s *= s;
    float specular = s * s * s * 0.06;
    vec3 lit = albedo * (hemisphere + key + fill + rim) + specular;
    color = vec4(material.emissive_factor.r > 0.5 ? albedo : lit, 1.0);  // emissive marks flat props
}
"""
FRAGMENT_SHADER = FRAGMENT_SHADER.replace("OUTFIT_RULE", shader_rule())

