//! Trust: the rules that keep a restore inside its target whatever the data holds, and the
//! signatures that tell entries a trusted job published from the rest.

pub mod rules;
pub mod sign;
