//! Integration tests of resurgo-clone on real filesystems the tests make themselves (an XFS
//! image with reflink on a loop device, tmpfs), one module per method and one for the errors.
//! They run as root: they mount, and the golden trees are owned by `nobody` as PostgreSQL data
//! would be by its own user.

mod copy;
mod errors;
mod overlay;
mod support;
mod xfs;
