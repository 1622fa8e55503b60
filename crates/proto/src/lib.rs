//! The gRPC contracts Motorpool services use to call each other, generated from `proto/`.

#![allow(clippy::all, missing_docs)]

pub mod identity {
    pub mod v1 {
        tonic::include_proto!("motorpool.identity.v1");
    }
}

pub mod payments {
    pub mod v1 {
        tonic::include_proto!("motorpool.payments.v1");
    }
}

pub mod inventory {
    pub mod v1 {
        tonic::include_proto!("motorpool.inventory.v1");
    }
}

pub mod configurator {
    pub mod v1 {
        tonic::include_proto!("motorpool.configurator.v1");
    }
}
