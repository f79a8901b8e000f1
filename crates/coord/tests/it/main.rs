//! Integration tests of resurgo-coord: the embedded store on a temp folder and etcd started by
//! the tests themselves (one binary, one module per store).

mod embedded;
mod etcd;
mod etcd_tls;
mod support;
