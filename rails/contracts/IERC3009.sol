// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.26;

/// @title The token interface d402's contracts need: ERC-20 transfers and EIP-3009's
/// receiveWithAuthorization (USDC has both).
interface IERC3009 {
    function transfer(address to, uint256 value) external returns (bool);
    function balanceOf(address owner) external view returns (uint256);
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external;
}
