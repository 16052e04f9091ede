"""Launch the clip_depth node (SPACE-CLIP monocular metric depth).

    ros2 launch clip_depth_ros clip_depth.launch.py \
        image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info \
        checkpoint:=/path/to/space_clip.safetensors

Parameters come from params_file (default: the installed
config/clip_depth.yaml); the model/device arguments below override it only
when they are given (non-empty).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

# Launch argument -> node parameter, applied only when the argument is non-empty.
_STRING_OVERRIDES = {
    'model_config': 'model_config',
    'checkpoint': 'checkpoint',
    'clip_weights': 'clip_weights',
    'clip_config': 'clip_config',
    'device': 'device',
    'dtype': 'dtype',
}


def _parse_bool(name, value):
    lowered = value.strip().lower()
    if lowered in ('true', '1', 'yes', 'on'):
        return True
    if lowered in ('false', '0', 'no', 'off'):
        return False
    raise ValueError(f"launch argument {name}:={value!r} is not a boolean")


def _launch_node(context, *args, **kwargs):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    overrides = {}
    for launch_arg, param in _STRING_OVERRIDES.items():
        value = arg(launch_arg)
        if value != '':
            overrides[param] = value
    use_compressed = arg('use_compressed')
    if use_compressed != '':
        compressed = _parse_bool('use_compressed', use_compressed)
        overrides['image_transport'] = 'compressed' if compressed else 'raw'

    image_topic = arg('image_topic')
    parameters = [arg('params_file')]
    if overrides:
        parameters.append(overrides)

    node = Node(
        package='clip_depth_ros',
        executable='clip_depth_node',
        name='clip_depth',
        namespace=arg('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=parameters,
        remappings=[
            ('image', image_topic),
            ('image/compressed', image_topic + '/compressed'),
            ('camera_info', arg('camera_info_topic')),
        ],
        ros_arguments=['--log-level', arg('log_level')],
    )
    return [node]


def generate_launch_description():
    default_params = PathJoinSubstitution(
        [FindPackageShare('clip_depth_ros'), 'config', 'clip_depth.yaml'])
    return LaunchDescription([
        DeclareLaunchArgument(
            'image_topic', default_value='/camera/image_raw',
            description='Input sensor_msgs/Image topic (rectified). With '
                        'use_compressed, <image_topic>/compressed is used.'),
        DeclareLaunchArgument(
            'camera_info_topic', default_value='/camera/camera_info',
            description='sensor_msgs/CameraInfo of the input image'),
        DeclareLaunchArgument(
            'params_file', default_value=default_params,
            description='YAML parameter file for the node'),
        DeclareLaunchArgument(
            'model_config', default_value='',
            description='SPACE-CLIP training YAML (overrides model_config)'),
        DeclareLaunchArgument(
            'checkpoint', default_value='',
            description='SPACE-CLIP checkpoint, .pt/.pth or .safetensors (overrides checkpoint)'),
        DeclareLaunchArgument(
            'clip_weights', default_value='',
            description='Hugging Face CLIP model.safetensors for a decoder-only '
                        'checkpoint (overrides clip_weights)'),
        DeclareLaunchArgument(
            'clip_config', default_value='',
            description='Hugging Face config.json of the backbone (overrides clip_config)'),
        DeclareLaunchArgument(
            'dtype', default_value='',
            description='Model precision: f32, f16 or bf16 (overrides dtype)'),
        DeclareLaunchArgument(
            'device', default_value='',
            description='Compute device, e.g. cpu or cuda:0 (overrides device)'),
        DeclareLaunchArgument(
            'use_compressed', default_value='',
            description='true: subscribe to <image_topic>/compressed '
                        '(sensor_msgs/CompressedImage) instead of the raw image '
                        '(sets image_transport); empty: as in params_file'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the node and its relative topics'),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            description='Node log level (debug, info, warn, error, fatal)'),
        OpaqueFunction(function=_launch_node),
    ])
