// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.26;

/// @title Signatures: EIP-712 digests and ECDSA recovery shared by d402's contracts.
library Signatures {
    bytes32 internal constant EIP712_DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    /// secp256k1n / 2: signatures with a higher s are malleable copies and are refused.
    uint256 private constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    error InvalidSignature();

    function domainSeparator(string memory name, string memory version) internal view returns (bytes32) {
        return keccak256(
            abi.encode(EIP712_DOMAIN_TYPEHASH, keccak256(bytes(name)), keccak256(bytes(version)), block.chainid, address(this))
        );
    }

    function digest(bytes32 domain, bytes32 structHash) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
    }

    /// @notice The signer of `hash`, or address(0) for a malformed, malleable or unrecoverable
    /// signature: for checks that fall back to another scheme instead of reverting.
    function tryRecover(bytes32 hash, bytes calldata signature) internal pure returns (address) {
        if (signature.length != 65) return address(0);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (v < 27) v += 27;
        if (uint256(s) > HALF_N || (v != 27 && v != 28)) return address(0);
        return ecrecover(hash, v, r, s);
    }

    /// @notice The signer of `hash`; reverts on a malformed, malleable or unrecoverable signature.
    function recover(bytes32 hash, bytes calldata signature) internal pure returns (address) {
        address signer = tryRecover(hash, signature);
        if (signer == address(0)) revert InvalidSignature();
        return signer;
    }
}
