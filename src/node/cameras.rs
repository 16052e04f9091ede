//! The cameras one node serves. A camera is a name; its topics are the
//! node's usual relative names under it (`front/image`, `front/depth/image`),
//! so namespaces and remaps work as for one camera. No name at all is the
//! single unnamed camera of a one-camera node, with today's topics.

/// More cameras than this in one node is a configuration mistake (and one
/// forward pass over them all would take too long to be useful).
pub const MAX_CAMERAS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CameraNameError {
    #[error("parameter cameras: a camera name is empty")]
    Empty,
    #[error(
        "parameter cameras: {0:?} is not a valid camera name (letters, digits and _, not starting with a digit): \
         it becomes a topic and a parameter prefix"
    )]
    Invalid(String),
    #[error("parameter cameras: {0:?} is listed twice")]
    Duplicate(String),
    #[error("parameter cameras: {0} cameras, at most {MAX_CAMERAS}")]
    TooMany(usize),
}

/// The validated camera names; an empty list is the one unnamed camera (`""`).
pub fn parse_camera_names(names: &[String]) -> Result<Vec<String>, CameraNameError> {
    if names.is_empty() {
        return Ok(vec![String::new()]);
    }
    if names.len() > MAX_CAMERAS {
        return Err(CameraNameError::TooMany(names.len()));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if name.is_empty() {
            return Err(CameraNameError::Empty);
        }
        if !valid {
            return Err(CameraNameError::Invalid(name.clone()));
        }
        if out.contains(name) {
            return Err(CameraNameError::Duplicate(name.clone()));
        }
        out.push(name.clone());
    }
    Ok(out)
}

/// The relative topic `topic` of `camera` (`""`: the unnamed camera's).
pub fn camera_topic(camera: &str, topic: &str) -> String {
    if camera.is_empty() {
        topic.to_string()
    } else {
        format!("{camera}/{topic}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_names_is_one_unnamed_camera_with_todays_topics() {
        assert_eq!(parse_camera_names(&[]).unwrap(), vec![String::new()]);
        assert_eq!(camera_topic("", "depth/image"), "depth/image");
        assert_eq!(camera_topic("front", "depth/image"), "front/depth/image");
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(parse_camera_names(&names(&["front", "left_2", "_rear"])).unwrap().len(), 3);
        assert_eq!(parse_camera_names(&names(&["front", ""])), Err(CameraNameError::Empty));
        assert_eq!(parse_camera_names(&names(&["2nd"])), Err(CameraNameError::Invalid("2nd".into())));
        assert_eq!(parse_camera_names(&names(&["a/b"])), Err(CameraNameError::Invalid("a/b".into())));
        assert_eq!(parse_camera_names(&names(&["a", "a"])), Err(CameraNameError::Duplicate("a".into())));
        let many: Vec<String> = (0..=MAX_CAMERAS).map(|i| format!("c{i}")).collect();
        assert_eq!(parse_camera_names(&many), Err(CameraNameError::TooMany(MAX_CAMERAS + 1)));
        assert!(CameraNameError::Empty.to_string().starts_with("parameter cameras"));
    }
}
