//! What the guest-images tests need from the machine, as the test kit's
//! needs.

use std::sync::Arc;

use guest_images::exec::{find_tool, Tool};
use testkit::suite::Need;

/// A host tool, under the need `name` that `VNETLAB_REQUIRE` lists
/// (`qemu`, `apt`); the reason names the Debian package to install.
pub fn tool(name: &'static str, tool: Tool) -> Need {
    Need::Custom {
        name,
        check: Arc::new(move || find_tool(tool).map(drop).map_err(|e| e.to_string())),
    }
}
