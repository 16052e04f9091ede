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
    'model_config': 'model.config',
    'checkpoint': 'model.checkpoint',
    'clip_weights': 'model.clip_weights',
    'device': 'device',
}
_BOOL_OVERRIDES = {
    'use_compressed': 'use_compressed',
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
    for launch_arg, param in _BOOL_OVERRIDES.items():
        value = arg(launch_arg)
        if value != '':
            overrides[param] = _parse_bool(launch_arg, value)

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
            description='SPACE-CLIP training/model YAML (overrides model.config)'),
        DeclareLaunchArgument(
            'checkpoint', default_value='',
            description='SPACE-CLIP checkpoint (overrides model.checkpoint)'),
        DeclareLaunchArgument(
            'clip_weights', default_value='',
            description='CLIP backbone weights (overrides model.clip_weights)'),
        DeclareLaunchArgument(
            'device', default_value='',
            description='Compute device, e.g. cpu or cuda:0 (overrides device)'),
        DeclareLaunchArgument(
            'use_compressed', default_value='',
            description='true: subscribe to <image_topic>/compressed '
                        '(sensor_msgs/CompressedImage) instead of the raw image'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the node and its relative topics'),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            description='Node log level (debug, info, warn, error, fatal)'),
        OpaqueFunction(function=_launch_node),
    ])
