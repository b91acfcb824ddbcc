use super::*;

fn config(file: &str, extra: &str) -> Config {
    let yaml = format!(
        "version: 1\nclusters:\n  web: {{ endpoints: [127.0.0.1:8080] }}\nlisteners:\n  public: {{ address: 127.0.0.1:10080, routes: [{{ to: web }}] }}\n{extra}"
    );
    crate::config::parse_str(file, &yaml).unwrap()
}

#[test]
fn the_same_config_has_no_changes() {
    let a = served(&config("a.yaml", ""), None).unwrap();
    let d = diff(&a, &a, None);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].fleet, EVERY_FLEET);
    assert!(d[0].changes.is_empty());
    assert_eq!(to_text(&d), "fleet *: no change\n");
}

#[test]
fn added_and_changed_resources_name_their_fields_and_lines() {
    let old = served(&config("a.yaml", ""), None).unwrap();
    let new_config = config(
        "b.yaml",
        "  elsewhere: { address: 127.0.0.1:10081, routes: [{ to: web }] }\n",
    );
    let new = served(&new_config, None).unwrap();
    let d = &diff(&old, &new, None)[0];
    assert_eq!((d.added, d.removed, d.changed), (2, 0, 0), "{d:#?}");
    let listener = d.changes.iter().find(|c| c.section == "listeners").unwrap();
    assert_eq!(listener.name, "elsewhere");
    assert_eq!(
        listener.source.as_ref().unwrap().to_string(),
        "b.yaml:6:3 listeners.elsewhere"
    );
    let back = &diff(&new, &old, None)[0];
    assert_eq!((back.added, back.removed), (0, 2));
    assert_eq!(
        back.changes[0].source.as_ref().unwrap().location,
        "b.yaml:6:3",
        "a removed resource points at where it was"
    );

    let moved = config("a.yaml", "").clone();
    let mut yaml_port = served(&moved, None).unwrap();
    let listener = yaml_port.fleets.get_mut(EVERY_FLEET).unwrap();
    let l = listener
        .resources
        .get_mut("listeners")
        .unwrap()
        .get_mut("public")
        .unwrap();
    l["address"]["socket_address"]["port_value"] = 10099.into();
    let d = &diff(&old, &yaml_port, Some(EVERY_FLEET))[0];
    assert_eq!(d.changed, 1);
    assert_eq!(
        d.changes[0].fields[0].path,
        "address.socket_address.port_value"
    );
    let text = to_text(std::slice::from_ref(d));
    assert!(
        text.contains("~ listeners/public  (a.yaml:5:3 listeners.public)"),
        "{text}"
    );
    assert!(
        text.contains("address.socket_address.port_value: 10080 -> 10099"),
        "{text}"
    );
}

#[test]
fn fleets_are_diffed_apart_and_can_be_picked() {
    let fleets = "fleets:\n  edge: { listeners: [public] }\n  inner: { listeners: [public] }\n";
    let a = served(&config("a.yaml", fleets), None).unwrap();
    assert_eq!(a.fleets.keys().collect::<Vec<_>>(), ["edge", "inner"]);
    assert_eq!(diff(&a, &a, Some("inner")).len(), 1);
    assert_eq!(diff(&a, &a, Some("nope")).len(), 0);
}

#[test]
fn a_served_document_round_trips_and_garbage_is_an_error() {
    let a = served(&config("a.yaml", ""), Some("abc".into())).unwrap();
    let bytes = serde_json::to_vec(&a).unwrap();
    assert_eq!(parse_served(&bytes).unwrap(), a);
    assert!(parse_served(b"<html>").is_err());
    assert!(parse_served(b"{\"fleets\": 3}").is_err());
}
