//! `platform:` through `gitmoor apply` on the real dockerd: a service pinned to the host's
//! platform deploys; a commit that asks another platform of an image that is on the host only for
//! this one is refused before anything changes, with the reason, and the running container keeps
//! serving (the engine would refuse the create call, and the old planner recreated into that
//! refusal at every retry).

mod support;

use support::{container_id, inspect, output_text, unique, Host, Remote, StackGuard};

fn stack_file(platform: &str) -> String {
    format!(
        "services:\n  web:\n    image: example-busybox:1\n    platform: {platform}\n    command: [\"sleep\", \"86400\"]\n    init: true\n"
    )
}

#[test]
fn another_platform_of_a_local_image_is_refused_with_the_reason_and_changes_nothing() {
    let stack = unique("pf");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let file = format!("compose/{stack}/compose.yaml");
    remote.write(&file, &stack_file("linux/amd64"));
    remote.commit("web on amd64");
    let host = Host::new(&remote, "");
    host.apply_ok();
    let id = container_id(&stack, "web");
    assert_eq!(inspect(&id, "{{.State.Status}}"), "running");

    remote.write(&file, &stack_file("linux/arm64"));
    remote.commit("web on arm64");
    let plan = output_text(&host.gitmoor(&["plan"]));
    assert!(
        plan.contains("pull example-busybox:1: image example-busybox:1 is linux/amd64, the service wants linux/arm64"),
        "{plan}"
    );
    let out = host.gitmoor(&["apply"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("image example-busybox:1 for platform linux/arm64 cannot be pulled")
            && text.contains("nothing in this stack was changed"),
        "{text}"
    );
    assert_eq!(container_id(&stack, "web"), id, "the old container stays");
    assert_eq!(inspect(&id, "{{.State.Status}}"), "running");
    assert_eq!(
        inspect("example-busybox:1", "{{.Os}}/{{.Architecture}}"),
        "linux/amd64",
        "the local image is left as it was"
    );
}
