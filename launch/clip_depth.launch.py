"""Launch the clip_depth node (monocular metric depth: SPACE-CLIP, or
DepthCLIP zero-shot with model_type:=depthclip, or DepthBLIP-2 with
model_type:=depthblip2).

    ros2 launch clip_depth_ros clip_depth.launch.py \
        image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info \
        checkpoint:=/path/to/space_clip.safetensors

    ros2 launch clip_depth_ros clip_depth.launch.py model_type:=depthclip \
        checkpoint:=/path/to/RN50.pt depth_classes:='[near, close, far]' bin_list:='[0.5, 1.5, 4.0]'

With model_type:=depthclip and no model_config (here or in params_file), the
installed config/depthclip_nyu.yaml is the model config. The list arguments
(depth_templates, obj_classes, depth_classes, bin_list) are YAML lists;
templates hold braces, so quote each: depth_templates:='["This {} is {}"]'.

Parameters come from params_file (default: the installed
config/clip_depth.yaml); the model/device/output arguments below override it
only when they are given (non-empty). The outputs are relative names in
`namespace` (default none: /depth/image, /points, ...; with namespace:=cam:
/cam/depth/image, /cam/points, ...); stats are on /<namespace>/clip_depth/stats.
With respawn:=true the node is restarted 2 s after it exits: it exits with
1 when it cannot go on (its inference thread died), rather than staying in
the graph publishing nothing. (A start-up error, exit 2, would be retried
too: fix the parameters.)
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

# Launch argument -> node parameter, applied only when the argument is non-empty.
_STRING_OVERRIDES = ('cameras', 'model_config', 'checkpoint', 'clip_weights', 'clip_config', 'device', 'dtype', 'model_type',
                     'depth_templates', 'obj_classes', 'depth_classes', 'bin_list', 'beyond_bins')
# model_type spellings -> family and default model config: config/model_types.yaml,
# generated from the node's own family registry (no copy of the list here).
_MODEL_TYPES_FILE = 'model_types.yaml'
# Launch argument -> float node parameter, applied only when non-empty.
_FLOAT_OVERRIDES = ('depth_scale', 'temperature')
# Boolean launch argument -> (node parameter, value when true, value when false).
_BOOL_OVERRIDES = {
    'use_compressed': ('image_transport', 'compressed', 'raw'),
    'publish_colormap': ('publish_colormap', True, False),
}

# (name, default, description); the params_file default is added below.
_ARGUMENTS = [
    ('image_topic', '/camera/image_raw',
     'Input sensor_msgs/Image topic (rectified). With use_compressed, <image_topic>/compressed is used.'),
    ('camera_info_topic', '/camera/camera_info', 'sensor_msgs/CameraInfo of the input image'),
    ('model_config', '', 'Model YAML: a SPACE-CLIP training YAML, or a DepthCLIP or DepthBLIP-2 config (overrides model_config)'),
    ('checkpoint', '', 'SPACE-CLIP checkpoint (.pt/.pth/.safetensors), or for DepthCLIP the whole CLIP '
                       '(OpenAI RN50.pt, OpenCLIP or Hugging Face weights), for DepthBLIP-2 the BLIP-2 '
                       '(Hugging Face or LAVIS) (overrides checkpoint)'),
    ('model_type', '', 'space_clip, depthclip or depthblip2 (overrides the model config\'s model_type); without a '
                       'model_config, depthclip uses the installed config/depthclip_nyu.yaml and depthblip2 '
                       'config/depthblip2_nyu.yaml'),
    ('depth_templates', '', 'DepthCLIP / DepthBLIP-2 prompt templates with two {} (object, distance), a YAML list'),
    ('obj_classes', '', 'DepthCLIP / DepthBLIP-2 objects named in the prompts, a YAML list'),
    ('depth_classes', '', 'DepthCLIP / DepthBLIP-2 distance words, nearest first, a YAML list'),
    ('bin_list', '', 'DepthCLIP / DepthBLIP-2 depth of each distance word in metres, a YAML list'),
    ('depth_scale', '', 'DepthCLIP / DepthBLIP-2 factor on every bin'),
    ('temperature', '', 'DepthCLIP / DepthBLIP-2 softmax temperature over the distance classes'),
    ('beyond_bins', '', 'DepthCLIP / DepthBLIP-2: mark (+Inf / -Inf where the farthest / nearest distance class '
                        'is the most likely) or keep (the bins\' weighted mean everywhere); empty: as in params_file'),
    ('clip_weights', '', 'Hugging Face CLIP model.safetensors for a decoder-only checkpoint (overrides clip_weights)'),
    ('clip_config', '', 'Hugging Face config.json of the backbone (overrides clip_config)'),
    ('dtype', '', 'Model precision: f32, f16 or bf16 (overrides dtype)'),
    ('device', '', 'Compute device, e.g. cpu or cuda:0 (overrides device)'),
    ('use_compressed', '', 'true: subscribe to <image_topic>/compressed (sensor_msgs/CompressedImage) instead '
                           'of the raw image (sets image_transport); empty: as in params_file'),
    ('publish_colormap', '', 'true: also publish a bgr8 picture of the depth on depth/colormap '
                             '(for RViz); empty: as in params_file'),
    ('cameras', '', 'Camera names, a YAML list (e.g. [front, rear]): camera NAME reads NAME/image and '
                    'NAME/camera_info and publishes under NAME/; one model serves them all (overrides cameras)'),
    ('camera_namespaces', '', 'With cameras: where each camera\'s driver publishes, a YAML mapping such as '
                              '{front: /front_camera/color}: NAME/image -> <ns>/image_raw (and /compressed), '
                              'NAME/camera_info -> <ns>/camera_info'),
    ('namespace', '', 'Namespace of the node and its relative topics'),
    ('respawn', 'false', 'true: restart the node 2 s after it exits (it exits with 1 on an internal error)'),
    ('log_level', 'info', 'Node log level (debug, info, warn, error, fatal)'),
]


def _params_file_sets(path, name):
    """Whether the params file gives `name` a non-empty value."""
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return False
    for block in doc.values() if isinstance(doc, dict) else ():
        params = (block or {}).get('ros__parameters', {}) if isinstance(block, dict) else {}
        if params.get(name) not in (None, ''):
            return True
    return False


def _default_model_config(config_dir, model_type):
    """The installed model config of a `model_type` (any spelling the node
    accepts), from config/model_types.yaml; None when it has none."""
    key = model_type.strip().lower().replace('-', '_').replace(' ', '_')
    if not key:
        return None
    with open(os.path.join(config_dir, _MODEL_TYPES_FILE)) as f:
        table = yaml.safe_load(f) or {}
    entry = table.get(key)
    if entry is None:
        raise ValueError(f"launch argument model_type:={model_type!r} is not a known model family "
                         f"({', '.join(sorted({e['family'] for e in table.values()}))})")
    return entry.get('default_config')


def _parse_bool(name, value):
    lowered = value.strip().lower()
    if lowered in ('true', '1', 'yes', 'on'):
        return True
    if lowered in ('false', '0', 'no', 'off'):
        return False
    raise ValueError(f"launch argument {name}:={value!r} is not a boolean")


def _camera_remappings(text):
    """camera_namespaces:='{front: /front_camera/color}' -> the remaps of
    camera front's relative topics onto its driver's."""
    if text.strip() == '':
        return []
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError:
        mapping = None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) and v for v in mapping.values()):
        raise ValueError(f"launch argument camera_namespaces:={text!r} is not a mapping such as "
                         "'{front: /front_camera/color}'")
    remaps = []
    for name, ns in mapping.items():
        ns = ns.rstrip('/')
        remaps += [(f'{name}/image', f'{ns}/image_raw'),
                   (f'{name}/image/compressed', f'{ns}/image_raw/compressed'),
                   (f'{name}/camera_info', f'{ns}/camera_info')]
    return remaps


def _launch_node(context, *args, **kwargs):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    overrides = {name: arg(name) for name in _STRING_OVERRIDES if arg(name) != ''}
    for name, (param, when_true, when_false) in _BOOL_OVERRIDES.items():
        if arg(name) != '':
            overrides[param] = when_true if _parse_bool(name, arg(name)) else when_false
    for name in _FLOAT_OVERRIDES:
        if arg(name) != '':
            try:
                overrides[name] = float(arg(name))
            except ValueError:
                raise ValueError(f"launch argument {name}:={arg(name)!r} is not a number") from None
    share_config = os.path.join(get_package_share_directory('clip_depth_ros'), 'config')
    default_config = _default_model_config(share_config, overrides.get('model_type', ''))
    if (default_config and 'model_config' not in overrides
            and not _params_file_sets(arg('params_file'), 'model_config')):
        overrides['model_config'] = os.path.join(share_config, default_config)

    image_topic = arg('image_topic')
    parameters = [arg('params_file')]
    if overrides:
        parameters.append(overrides)
    remappings = [
        ('image', image_topic),
        ('image/compressed', image_topic + '/compressed'),
        ('camera_info', arg('camera_info_topic')),
    ]
    remappings += _camera_remappings(arg('camera_namespaces'))

    node = Node(
        package='clip_depth_ros',
        executable='clip_depth_node',
        name='clip_depth',
        namespace=arg('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=parameters,
        remappings=remappings,
        ros_arguments=['--log-level', arg('log_level')],
        respawn=_parse_bool('respawn', arg('respawn')),
        respawn_delay=2.0,
    )
    return [node]


def generate_launch_description():
    default_params = PathJoinSubstitution(
        [FindPackageShare('clip_depth_ros'), 'config', 'clip_depth.yaml'])
    arguments = [DeclareLaunchArgument(name, default_value=default, description=description)
                 for name, default, description in _ARGUMENTS]
    arguments.insert(2, DeclareLaunchArgument(
        'params_file', default_value=default_params, description='YAML parameter file for the node'))
    return LaunchDescription(arguments + [OpaqueFunction(function=_launch_node)])
